# Type stub of the C extension worker/_leibniz.c (its docstring has the error analysis).

LANES: int
BLOCK: int
ROUNDINGS: int
PAIR_ROUNDINGS: int
MAX_J: int

def pair_sum(j0: int, j1: int, /) -> tuple[float, float]: ...
