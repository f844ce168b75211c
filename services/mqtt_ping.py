"""Whether an MQTT broker answers at the MQTT level: one CONNECT, its CONNACK, a DISCONNECT.

A TCP connect is not enough: a hung broker still accepts connections (the kernel does) for as
long as its listen queue lasts. Any CONNACK, even a refusal, proves the broker is working.
"""

import os
import socket
import ssl
import struct

from services.mqtt_url import parse

_CONNACK = 0x20


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session: the broker keeps nothing of us
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + payload
    n, length = len(body), b""
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x10]) + length + body


def answers(url: str, timeout_s: float = 1.0) -> str | None:
    """None when the broker answered a CONNECT within `timeout_s`; else what went wrong."""
    target = parse(url)
    client_id = f"ioc-readyz-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s) as raw:
            sock: socket.socket = raw
            if target.tls:
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
            sock.sendall(_connect_packet(client_id, target.username, target.password))
            head = b""
            while len(head) < 4:
                chunk = sock.recv(4 - len(head))
                if not chunk:
                    return "the broker closed the connection without answering CONNECT"
                head += chunk
            if head[0] != _CONNACK:
                return f"the broker answered CONNECT with packet type {head[0] >> 4}"
            if head[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return None
    except TimeoutError:
        return f"the broker did not answer CONNECT within {timeout_s:g} s"
    except OSError as err:
        return f"unreachable: {err.strerror or err}"
