"""The packed file's wrapper: a compressed program as one base-93 number in printable ASCII.

The packer (:mod:`golfplan.core.export.packer`) compresses its program with ZPAQ; this module writes
those bytes as one base-93 number (every printable ASCII character from space to ``~`` but the
double quote and the backslash, so a triple-quoted string holds them: 1.22 characters a byte,
where the record's base85 takes 1.25) inside a four-line stub that decodes and runs it, and reads
such a file back (:func:`unpack`, for tests and for reading a submission, the record's base85
brotli files included). A build tool: never packed itself.
"""

from __future__ import annotations

WRAPPER = ('import zpaq\nn=0\nfor c in """{digits}""":n=n*93+ord(c)-32-(c>\'"\')-(c>\'\\\\\')\n'
           'exec(zpaq.decompress(n.to_bytes({length},\'big\')))\n')
BASE = 93  # printable ASCII but the double quote and the backslash: a triple-quoted string holds any of them


DIGITS = "".join(chr(c) for c in range(32, 127) if chr(c) not in '"\\')  # the base-93 digits, in order


def to_digits(n: int, width: int = 0) -> str:
    """``n`` in base 93 (:data:`DIGITS`), most significant first, at least ``width``
    digits. Halves are converted apart: plain repeated division is quadratic in the length."""
    if n < BASE ** 64:
        out = []
        while n:
            n, v = divmod(n, BASE)
            out.append(DIGITS[v])
        return "".join(reversed(out)).rjust(width, DIGITS[0])
    half = (n.bit_length() * 0.1529) // 2  # ~digits/2 (log_93 2 = 0.1529)
    high, low = divmod(n, BASE ** int(half))
    return to_digits(high, width - int(half)) + to_digits(low, int(half))


def from_digits(digits: str) -> int:
    """The inverse of :func:`to_digits` (the packed file's stub does the same in a loop)."""
    if len(digits) <= 64:
        n = 0
        for c in digits:
            n = n * BASE + ord(c) - 32 - (c > '"') - (c > "\\")
        return n
    half = len(digits) // 2
    return from_digits(digits[:half]) * BASE ** (len(digits) - half) + from_digits(digits[half:])


def wrap(data: bytes) -> bytes:
    """The packed file for compressed program bytes: the stub, the digits and the length."""
    digits = to_digits(int.from_bytes(data, "big"))
    return WRAPPER.format(digits=digits, length=len(data)).encode("ascii")


def unpack(code: bytes) -> str:
    """The program inside a packed file (for tests and for reading what was submitted): the ZPAQ
    wrapper, or the record's brotli one."""
    if code.startswith(b"import zpaq\n"):
        start = code.index(b'"""') + 3
        digits = code[start: code.index(b'"""', start)].decode("ascii")
        data = from_digits(digits).to_bytes(int(code[code.index(b"to_bytes(") + 9: code.rindex(b",")]), "big")
        import zpaq

        return zpaq.decompress(data).decode("utf-8")
    import base64

    import brotli

    start = code.index(b'b85decode("') + len(b'b85decode("')
    return brotli.decompress(base64.b85decode(code[start: code.index(b'")', start)])).decode("utf-8")
