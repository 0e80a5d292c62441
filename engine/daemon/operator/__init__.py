"""What the guide's operator scripts (``scripts/*.sh``) run: reports read from a running daemon's
API and ``/proc`` (``reports``), CPU profiles (``profiling``), heap dumps (``heapfiles``) and the
log archive (``logarchive``). ``engine.daemon.opscli`` wires them as ``hft`` subcommands."""
