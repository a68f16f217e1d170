"""A tiny DNS responder for scripts/image.sh's name-resolution check (no internet, no deps).

    python3 scripts/dns-responder.py ADDR NAME=IPV4 ...

Answers A queries for the NAMEs given (exact, case-insensitive, no search-list logic: the
client must expand names itself), an empty answer for other types of a known name, NXDOMAIN
for every other name. Brings the loopback interface up first (it runs in a fresh network
namespace), prints "ready" once bound to ADDR:53/udp, and logs each query on stderr.
"""
import fcntl
import socket
import struct
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifreq = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    s.close()


def main():
    addr = sys.argv[1]
    table = {k.lower(): v for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    loopback_up()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(512)
        qid, flags = struct.unpack(">HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1 : i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1 : i + 3])[0]
        question = q[12 : i + 5]
        name = ".".join(labels).lower()
        ip = table.get(name)
        answer = b""
        if ip and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
        rcode = 0 if ip else 3
        what = ip if answer else ("no data" if ip else "NXDOMAIN")
        sys.stderr.write(f"dns: {name} type {qtype}: {what}\n")
        sys.stderr.flush()
        # QR, the query's RD, RA; one question, one answer or none.
        head = struct.pack(
            ">HHHHHH", qid, 0x8080 | (flags & 0x0100) | rcode, 1, 1 if answer else 0, 0, 0
        )
        s.sendto(head + question + answer, peer)


main()
