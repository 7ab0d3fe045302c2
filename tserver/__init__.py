"""The compute side's Thrift RPC server (`python -m tserver`)."""
