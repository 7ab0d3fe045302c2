"""Build hook for the one C extension: the Leibniz kernel (worker/_leibniz.c).

Everything else is declared in pyproject.toml. -O3 without -ffast-math: the error analysis in
worker/leibniz.py assumes IEEE double arithmetic evaluated in the order the source says.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "worker._leibniz",
            sources=["worker/_leibniz.c"],
            extra_compile_args=["-O3", "-fno-fast-math", "-ffp-contract=off", "-std=c11"],
        )
    ]
)
