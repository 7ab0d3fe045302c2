"""Starting a real product for tests and benchmarks: free ports, waiting, and the whole stack
(supervisord running the Thrift server and the Celery worker, plus the gateway) in a folder of its own.

    waiting.py   free_port, wait_for (a time-out is an AssertionError: a failure in a test, an error in a bench)
    stack.py     Stack: one running product, and the means to look inside it
"""
