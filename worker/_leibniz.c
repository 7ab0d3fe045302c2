/*
 * worker._leibniz: the compiled inner loop of the Leibniz series for pi.
 *
 * pair_sum(j0, j1) returns, as a double-double (hi, lo), the sum over j in [j0, j1) of
 *
 *     t_j = 2 / ((4j+1)(4j+3)) = 1/(4j+1) - 1/(4j+3),
 *
 * i.e. two consecutive Leibniz terms folded into one positive term, so the sum has no
 * cancellation and every rounding error is relative to a positive quantity.
 *
 * Speed without -ffast-math.  The division is the bottleneck, so two terms share one:
 *     t_j + t_{j+LANES} = 2 (p + q) / (p q),   p = (4j+1)(4j+3),  q = (4(j+LANES)+1)(4(j+LANES)+3).
 * LANES independent accumulators (acc[LANES]) are updated lane-wise, which gcc vectorises with
 * plain SSE2 / NEON; j is carried as x = 4j in doubles (no int->double conversion in the loop).
 * Each lane sums BLOCK terms (BLOCK/2 fractions) from zero, the lanes are added pairwise, and
 * the block sum is folded into a double-double total with TwoSum, so the ordinary rounding
 * error never grows with the number of terms of a call.
 *
 * Rigorous error bound of one call (u = 2^-53, gamma_k = k u / (1 - k u), round-to-nearest,
 * no FMA contraction, no extended precision -- all checked below or by the build flags):
 *   - x = 4j and x + 4*LANES are exact: multiples of 4 below 2^55 (j <= 2^52).
 *   - one fraction 2(p+q)/(pq): p and q carry 3 roundings each (x+1, x+3, product), p+q adds
 *     1, pq adds 1, the quotient 1: the computed value is v(1+θ) with |θ| <= gamma_12
 *     (Higham, Lemma 3.1: a product of 12 factors (1+δ)^{±1}; p+q of two positive values
 *     keeps the relative error of the worse one).  PAIR_ROUNDINGS = 12.
 *   - a lane adds BLOCK/2 such positive values starting from 0: gamma_{BLOCK/2 - 1};
 *     the LANES lane sums are added pairwise: gamma_{log2 LANES}.  Multiplying by 2 is exact.
 *   So each computed block sum b^ = sum t_j (1+θ_j), |θ_j| <= gamma_K with
 *       K = ROUNDINGS = PAIR_ROUNDINGS + BLOCK/2 - 1 + log2(LANES)        (= 30 here).
 *   The (j1-j0) mod (LANES*BLOCK) trailing terms are computed one by one (4 roundings <= K)
 *   and each is folded as a block of its own.
 *   - Folding: (s, e) = TwoSum(hi, b^) is exact; e + lo is rounded once (|e + lo| <= 2u hi);
 *     FastTwoSum(s, e + lo) is exact.  Each fold therefore loses at most 2u^2 (1+u) max(hi),
 *     and with N_b folds the loss is below 3 N_b u^2 T (T = sum of the b^, N_b u < 2^-8).
 *   With S the exact sum, N_b = floor(n / (LANES*BLOCK)) + n mod (LANES*BLOCK), n = j1 - j0,
 *   and c = gamma_K + 4 N_b u^2:
 *       |hi + lo - S| <= c S <= c / (1 - c) * (hi + lo).
 *   worker/leibniz.py evaluates this bound in exact rational arithmetic from the module
 *   attributes BLOCK, LANES and ROUNDINGS.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fenv.h>
#include <float.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the error bound assumes double arithmetic evaluated in double (no x87 extended precision)"
#endif
#if DBL_MANT_DIG != 53
#error "the error bound assumes IEEE 754 binary64 doubles"
#endif

#define LANES 8       /* independent accumulators; power of two (pairwise lane reduction) */
#define LANES_LOG2 3
#define BLOCK 32      /* terms per lane between two folds; even (two terms per division) */
#define PAIR_ROUNDINGS 12
#define ROUNDINGS (PAIR_ROUNDINGS + BLOCK / 2 - 1 + LANES_LOG2)
#define MAX_J 4503599627370496LL /* 2^52: keeps j, and 4j as a multiple of 4, exact doubles */

/* Knuth's TwoSum: s + e == a + b exactly, for any order of magnitude. */
static inline void two_sum(double a, double b, double *s, double *e)
{
    double x = a + b;
    double bv = x - a;
    double av = x - bv;
    *s = x;
    *e = (a - av) + (b - bv);
}

/* Add a non-negative value to the double-double (hi, lo) (accurate double-double addition). */
static inline void fold(double *hi, double *lo, double b)
{
    double s, e;
    two_sum(*hi, b, &s, &e);
    e += *lo;
    double h = s + e; /* FastTwoSum(s, e): |s| >= |e| */
    *lo = e - (h - s);
    *hi = h;
}

/* One block: LANES * BLOCK consecutive terms starting at j (x0 = 4j). */
static inline double block_sum(double x0)
{
    double acc[LANES], x[LANES];
    for (int l = 0; l < LANES; l++) {
        acc[l] = 0.0;
        x[l] = x0 + 4.0 * l;
    }
    for (int i = 0; i < BLOCK / 2; i++) {
        for (int l = 0; l < LANES; l++) {
            double p = (x[l] + 1.0) * (x[l] + 3.0);
            double y = x[l] + 4.0 * LANES;
            double q = (y + 1.0) * (y + 3.0);
            acc[l] += (p + q) / (p * q);
            x[l] += 8.0 * LANES;
        }
    }
    /* pairwise lane reduction: LANES_LOG2 levels */
    for (int w = LANES / 2; w >= 1; w /= 2) {
        for (int l = 0; l < w; l++) {
            acc[l] += acc[l + w];
        }
    }
    return 2.0 * acc[0];
}

static void sum_range(long long j0, long long j1, double *hi_out, double *lo_out)
{
    double hi = 0.0, lo = 0.0;
    long long n = j1 - j0;
    long long blocks = n / (LANES * BLOCK);
    double x = 4.0 * (double)j0;
    for (long long b = 0; b < blocks; b++) {
        fold(&hi, &lo, block_sum(x));
        x += 4.0 * (LANES * BLOCK);
    }
    for (long long j = j0 + blocks * (LANES * BLOCK); j < j1; j++) {
        double xj = 4.0 * (double)j;
        fold(&hi, &lo, 2.0 / ((xj + 1.0) * (xj + 3.0)));
    }
    *hi_out = hi;
    *lo_out = lo;
}

static int as_index(PyObject *obj, const char *name, long long *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || v < 0 || v > MAX_J) {
        PyErr_Format(PyExc_ValueError, "%s must be in [0, 2**52]", name);
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *pair_sum(PyObject *self, PyObject *args)
{
    PyObject *o0, *o1;
    long long j0, j1;
    if (!PyArg_ParseTuple(args, "OO:pair_sum", &o0, &o1)) {
        return NULL;
    }
    if (as_index(o0, "j0", &j0) < 0 || as_index(o1, "j1", &j1) < 0) {
        return NULL;
    }
    if (j0 > j1) {
        PyErr_SetString(PyExc_ValueError, "pair_sum needs 0 <= j0 <= j1 <= 2**52");
        return NULL;
    }
    /* The bound is only valid under round-to-nearest; refuse rather than return wrong digits. */
    if (fegetround() != FE_TONEAREST) {
        PyErr_SetString(PyExc_RuntimeError, "pair_sum needs the FE_TONEAREST rounding mode");
        return NULL;
    }
    double hi, lo;
    Py_BEGIN_ALLOW_THREADS
    sum_range(j0, j1, &hi, &lo);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(dd)", hi, lo);
}

static PyMethodDef methods[] = {
    {"pair_sum", pair_sum, METH_VARARGS,
     "pair_sum(j0, j1) -> (hi, lo): sum of 2/((4j+1)(4j+3)) for j in [j0, j1) as a double-double."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "worker._leibniz",
    "Compiled Leibniz-series kernel with a rigorous floating-point error bound.", -1, methods,
};

PyMODINIT_FUNC PyInit__leibniz(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "LANES", LANES) < 0 || PyModule_AddIntConstant(m, "BLOCK", BLOCK) < 0 ||
        PyModule_AddIntConstant(m, "ROUNDINGS", ROUNDINGS) < 0 ||
        PyModule_AddIntConstant(m, "PAIR_ROUNDINGS", PAIR_ROUNDINGS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *max_j = PyLong_FromLongLong(MAX_J);
    int rc = max_j == NULL ? -1 : PyModule_AddObjectRef(m, "MAX_J", max_j);
    Py_XDECREF(max_j);
    if (rc < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
