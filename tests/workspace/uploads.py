"""Study zips for the upload tests: good ones from real images, and each kind of bad one."""

import io
import stat
import zipfile
from pathlib import Path

from tests.images import write_scene_folder


def zip_folder(folder: Path, *, prefix: str = "") -> bytes:
    """Every file under ``folder`` in a zip, at ``prefix`` + its relative path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def zip_members(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def study_zip(tmp: Path, *, scenes: int = 2, prefix: str = "", seed: int = 0) -> bytes:
    """A ref-vs-test (or pairwise) study: ``scenes`` scenes of a reference and 2 tests."""
    folder = write_scene_folder(
        tmp / f"zip-src-{seed}",
        {f"s{i}": ["reference", "a", "b"] for i in range(scenes)},
        seed=seed,
    )
    return zip_folder(folder, prefix=prefix)


def good_member(tmp: Path) -> bytes:
    return (write_scene_folder(tmp / "one", {"s": ["reference"]}) / "s/reference.png").read_bytes()


def symlink_zip(target: str = "/etc/passwd") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("s/link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buffer.getvalue()


def corrupt_zip(tmp: Path) -> bytes:
    """A zip whose member's stored bytes were changed after its CRC was written."""
    data = bytearray(zip_members({"s/reference.png": good_member(tmp)}, method=zipfile.ZIP_STORED))
    offset = data.index(b"\x89PNG") + 200
    data[offset] ^= 0xFF
    return bytes(data)


def multipart_post(url: str, fields: dict[str, str], file_path: Path, headers: dict[str, str]):
    """POST ``fields`` and the file as ``file`` (multipart/form-data), streaming the file
    from disk with a Content-Length; returns (status, body bytes)."""
    import http.client
    import urllib.parse
    import uuid

    boundary = uuid.uuid4().hex
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{file_path.name}"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + file_path.stat().st_size + len(tail)
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    connection.putrequest("POST", parts.path)
    for name, value in {
        **headers,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(size),
    }.items():
        connection.putheader(name, value)
    connection.endheaders()
    try:
        connection.send(head)
        with open(file_path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                connection.send(chunk)
        connection.send(tail)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused early: the response is still there to read
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body
