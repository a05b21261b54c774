"""Print N free TCP ports on 127.0.0.1 (default 1), one per line, for CI's own servers."""

import socket
import sys

held = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)  # held until all are chosen, so the N ports differ
print("\n".join(str(s.getsockname()[1]) for s in held))
