__all__ = ['ttypes', 'constants', 'RPCcelery']
