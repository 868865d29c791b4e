"""Extensions to asyncio and workarounds around its shortcomings.

* :mod:`.recvmsg`: a datagram transport that reads with ``recvmsg`` (so
  that ancillary data like the destination address of a datagram, and the
  socket's error queue with ICMP errors, are available) and that works on
  every event loop that implements ``add_reader`` (the default selector
  loops and uvloop).
"""
