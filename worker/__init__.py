"""The Celery side: the app (app.py), the calc_pi task (tasks.py) and the Leibniz kernel (leibniz.py,
_leibniz.c). It records progress through the state store (state/); nothing imports this package.
`python -m worker` runs a worker host."""
