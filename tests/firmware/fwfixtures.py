"""What the firmware tests boot, built at test time from Debian packages into the test's
own directory (nothing committed, nothing fetched while testing):

- the Secure Boot chain: shim-signed's `shimx64.efi.signed` as `shimx64.efi` and
  grub-efi-amd64-signed's network grub `grubnetx64.efi.signed` as `grubx64.efi`;
- Debian's signed kernel (linux-image-amd64) and a busybox initramfs whose /init prints
  a marker and powers off (a newc cpio written here, with /dev/console in it);
- grub network images (`grub-mkimage`): x64 from grub-efi-amd64-bin's modules, arm64
  from the modules of Debian's arm64 grub-efi-arm64-bin, unpacked (never installed) into
  a cache directory by .ci/run (`PTFTPD_GRUB_ARM64`, default
  /var/cache/ptftpd-tests/grub-arm64).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

from fwlab import require_file

from support import missing, require_tool

SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB_NET = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
IPXE_EFI = Path("/usr/lib/ipxe/ipxe.efi")
GRUB_ARM64 = Path(os.environ.get("PTFTPD_GRUB_ARM64", "/var/cache/ptftpd-tests/grub-arm64"))


def readable(root: Path) -> None:
    """ROOT and everything in it readable by the servers (pytest's tmp_path is not)."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def secure_boot_root(root: Path, grub_cfg: str) -> None:
    """ROOT as `pxed --secure-boot` wants it: shimx64.efi and grubx64.efi, `grub_cfg` as
    grub/grub.cfg, and default.0 (BOOTFILE, for no one here)."""
    (root / "grub").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(require_file(SHIM, "shim-signed"), root / "shimx64.efi")
    shutil.copyfile(require_file(GRUB_NET, "grub-efi-amd64-signed"), root / "grubx64.efi")
    (root / "grub" / "grub.cfg").write_text(grub_cfg)
    (root / "default.0").write_bytes(b"not for UEFI")
    readable(root)


def signed_kernel() -> Path:
    """The newest /boot/vmlinuz-* of linux-image-amd64 (signed by Debian)."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*-amd64"))
    if not kernels:
        missing("no /boot/vmlinuz-*-amd64 (Debian package linux-image-amd64)")
    return kernels[-1]


def unsigned_copy(source: Path, target: Path) -> None:
    """`source` (a signed PE/EFI file) without its Authenticode signature: the security
    data directory entry zeroed and the certificate table at the file's end cut off."""
    data = bytearray(source.read_bytes())
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe : pe + 4] == b"PE\x00\x00", f"{source} is not a PE file"
    optional = pe + 24
    pe32_plus = int.from_bytes(data[optional : optional + 2], "little") == 0x20B
    entry = optional + (112 if pe32_plus else 96) + 4 * 8  # data directory 4: security
    offset = int.from_bytes(data[entry : entry + 4], "little")
    assert offset, f"{source} carries no signature"
    data[entry : entry + 8] = bytes(8)
    del data[offset:]
    target.write_bytes(bytes(data))


def _newc(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One entry of a newc cpio archive (the initramfs format)."""
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = head + name.encode() + b"\x00"
    out += b"\x00" * (-len(out) % 4)
    out += data + b"\x00" * (-len(data) % 4)
    return out


def busybox_initramfs(path: Path, marker: str, show_cmdline: bool = False) -> None:
    """A gzip'd initramfs: Debian's busybox with the libraries it links (ldd), /dev/console,
    and an /init that prints `marker` on the console (and, with `show_cmdline`, the
    kernel command line between ``CMDLINE<`` and ``>CMDLINE``) and powers off."""
    busybox = Path(require_tool("busybox"))
    ldd = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True, check=False)
    libs = [Path(part) for part in ldd.stdout.split() if part.startswith("/")]
    cmdline = ""
    if show_cmdline:
        cmdline = (
            "/bin/busybox mount -t proc proc /proc\n"
            '/bin/busybox echo "CMDLINE<$(/bin/busybox cat /proc/cmdline)>CMDLINE"\n'
        )
    init = f"#!/bin/busybox sh\n/bin/busybox echo {marker}\n{cmdline}/bin/busybox poweroff -f\n"
    archive = bytearray()
    dirs = {"dev", "bin", "proc", "sys"} | {str(p.parent).lstrip("/") for p in libs}
    for folder in sorted(dirs | {str(Path(d).parent) for d in dirs} - {"."}):
        archive += _newc(folder, 0o040755)
    archive += _newc("dev/console", 0o020600, rdev=(5, 1))
    archive += _newc("bin/busybox", 0o100755, busybox.read_bytes())
    for lib in libs:
        archive += _newc(str(lib).lstrip("/"), 0o100755, lib.resolve().read_bytes())
    archive += _newc("init", 0o100755, init.encode())
    archive += _newc("TRAILER!!!", 0)
    path.write_bytes(gzip.compress(bytes(archive), 6))


NET_MODULES = ("efinet", "tftp", "http", "net", "normal", "echo", "configfile", "sleep")
GRUB_X64 = Path("/usr/lib/grub/x86_64-efi")


def network_grub(path: Path, tmp: Path, target: str = "x86_64-efi") -> None:
    """An EFI grub (unsigned, `target` x86_64-efi or arm64-efi) that reads `grub/grub.cfg`
    from where it was loaded from: its embedded config takes the prefix from the
    network device grub booted over, `(tftp,SERVER)` or `(http,SERVER:PORT)`."""
    if target == "arm64-efi":
        moddir = GRUB_ARM64 / "usr/lib/grub/arm64-efi"
        hint = (
            f"no arm64 grub modules in {moddir} (.ci/run unpacks grub-efi-arm64-bin:arm64 "
            "there: apt-get download grub-efi-arm64-bin:arm64; dpkg -x)"
        )
    else:
        moddir, hint = GRUB_X64, f"{GRUB_X64} is missing (Debian package grub-efi-amd64-bin)"
    if not (moddir / "efinet.mod").is_file():
        missing(hint)
    embedded = tmp / f"{target}-embedded.cfg"
    embedded.write_text("set prefix=($root)/grub\nconfigfile $prefix/grub.cfg\n")
    argv = [require_tool("grub-mkimage"), "-O", target, "-d", str(moddir)]
    argv += ["-c", str(embedded), "-p", "/grub", "-o", str(path), *NET_MODULES]
    subprocess.run(argv, check=True, capture_output=True)
