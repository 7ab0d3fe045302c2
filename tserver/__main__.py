"""`python -m tserver` starts the Thrift server."""

from tserver.server import main

main()
