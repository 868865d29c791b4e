"""Container module, see submodules:

* :mod:`.client` -- using CoAP via a proxy server
* :mod:`.server` -- running a proxy server
* :mod:`.cache` -- the response cache of the proxy server (no I/O)
"""
