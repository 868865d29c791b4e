"""CoRE Resource Directory (RFC 9176): the directory and a client that
registers at one.

* :mod:`.client.register`: :class:`~.client.register.Registerer` keeps a
  context's resources registered at a resource directory (as
  ``aiocoap-fileserver --register`` does).
* :mod:`.server`: the directory as a :class:`aiocoap.resource.Site`
  (:class:`~.server.StandaloneResourceDirectory`), served by the
  ``aiocoap-rd`` program (:mod:`aiocoap.cli.rd`).
* :mod:`.directory`: the directory's rules without I/O, driven by the
  caller's clock; it answers from the in-memory :mod:`.index` and writes
  every change through to a :mod:`.storage` -- :mod:`.sqlite` keeps the
  registrations in an SQLite database, :class:`.storage.MemoryStorage` in
  a dictionary.

Everything here uses only the standard library (link format comes from
:mod:`aiocoap.util.linkformat`).
"""
