#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The demo's driver, started by scripts/demo once everything is built: boots
# three real guests (TCG, virtio balloon) as bare QEMU processes, or with
# --libvirt as transient libvirt domains, runs ovcd on them (QMP driver, or
# libvirt driver limited with --only to the demo's domains) with a config
# that leaves them 1 GiB of "host" between them (3 GiB configured: three
# times that), drives a scripted load through ovc-guest-workload in each
# guest while showing `ovcctl top`, runs examples/ovc-vmm beside them, then
# prints a summary and checks it: the measured overcommit ratio (configured
# memory / VmRSS of the guests' QEMU processes) must reach 2.0, no guest may
# have OOM-killed anything, and ovc-vmm must find every page intact.
# Everything it starts lives in a private run directory and dies with it
# (PR_SET_PDEATHSIG for processes, destroy + undefine for domains, libvirtd
# stopped if the demo started it), also on Ctrl-C and on failure.
#
# Single process, single thread except one helper thread per "spike".
#
import argparse
import ctypes
import fcntl
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

MIB = 1 << 20
GIB = 1 << 30
GUEST_MIB = 1024
BUDGET = GIB  # what the demo lets the three guests have together
LIBVIRT_URI = "qemu:///system"
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)
T0 = time.monotonic()
TTY = sys.stdout.isatty()


def elapsed():
    return time.monotonic() - T0


def die_with_parent():
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def fmt_size(n):
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= GIB:
        return f"{sign}{n / GIB:.2f} GiB"
    return f"{sign}{n / MIB:.0f} MiB"


def rss_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/meminfo")


class Progress:
    """One line rewritten in place on a terminal, plain lines otherwise."""

    def __init__(self):
        self.last = ""

    def show(self, text):
        line = f"demo [{elapsed():5.1f} s] {text}"
        if TTY:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        elif text != self.last:
            print(line, flush=True)
        self.last = text

    def done(self, text):
        if TTY:
            sys.stdout.write("\r\033[K")
        print(f"demo [{elapsed():5.1f} s] {text}", flush=True)
        self.last = ""


class Guest:
    """A demo guest's workload channel: ovc-guest-workload on the guest's
    second serial port, a unix socket on the host. Subclasses start and stop
    the guest (bare QEMU, or a libvirt domain)."""

    def __init__(self, name, gdir):
        self.name = name
        self.dir = gdir
        os.makedirs(self.dir)
        self.serial = os.path.join(self.dir, "serial.sock")
        self.console = os.path.join(self.dir, "console.log")
        self.sock = None
        self.buf = b""
        self.lock = threading.Lock()

    def connect(self):
        if self.sock:
            return True
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.serial)
        except OSError:
            s.close()
            return False
        self.sock = s
        return True

    def cmd(self, line, timeout=60.0):
        """One command to ovc-guest-workload; its "ok ..." reply, or raises."""
        with self.lock:
            if not self.connect():
                raise RuntimeError(f"{self.name}: serial port not reachable")
            self.sock.setblocking(False)
            try:
                while self.sock.recv(4096):  # drop late replies
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            self.buf = b""
            self.sock.setblocking(True)
            # A leading newline ends any half line the UART dropped bytes of.
            self.sock.sendall(b"\n" + line.encode() + b"\n")
            deadline = time.monotonic() + timeout
            while True:
                while b"\n" in self.buf:
                    raw, self.buf = self.buf.split(b"\n", 1)
                    text = raw.decode(errors="replace").strip()
                    if text.startswith("ok "):
                        return text
                    if text.startswith("err "):
                        raise RuntimeError(f"{self.name}: {line}: {text}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no reply to '{line}' in {timeout:.0f} s")
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    self.sock.close()
                    self.sock = None
                    raise RuntimeError(f"{self.name}: serial connection closed (QEMU died?)")
                self.buf += data

    def ready(self):
        try:
            return self.cmd("ping", timeout=1.0) == "ok pong"
        except (TimeoutError, RuntimeError):
            return False

    def meminfo(self):
        fields = {}
        for kv in self.cmd("meminfo", timeout=30.0)[3:].split():
            k, v = kv.split("=")
            fields[k] = int(v)
        return fields

    def rss(self):
        pid = self.pid()
        return rss_of(pid) if pid else 0


class QemuGuest(Guest):
    """A bare QEMU process, its QMP socket in the directory ovcd watches."""

    def __init__(self, name, run, image, deflate_on_oom=True):
        super().__init__(name, os.path.join(run, name))
        self.qmp = os.path.join(run, "qmp", name + ".qmp")
        argv = [
            "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", str(GUEST_MIB), "-smp", "1",
            "-nodefaults", "-nographic", "-no-user-config", "-name", name,
            "-kernel", os.path.join(image, "vmlinuz"), "-initrd", os.path.join(image, "initramfs.img"),
            "-append", "console=ttyS0 quiet",
            "-serial", "file:" + self.console,
            "-serial", f"unix:{self.serial},server=on,wait=off",
            # deflate-on-oom: the guest's balloon driver gives pages back
            # before its OOM killer runs, as libvirt's autodeflate does.
            # The summary counts how often that happened (oom_deflate).
            "-device", f"virtio-balloon-pci,id=balloon0,deflate-on-oom={'on' if deflate_on_oom else 'off'}",
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
        ]
        log = open(os.path.join(self.dir, "qemu.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=die_with_parent)
        log.close()

    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def why_dead(self):
        return f"QEMU exited (status {self.proc.returncode}); see {self.dir}/qemu.log"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def virsh(*args, check=True, timeout=120):
    r = subprocess.run(["virsh", "-q", "-c", LIBVIRT_URI, *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


class NoMountNamespace(RuntimeError):
    pass


class LibvirtGuest(Guest):
    """A transient libvirt domain (type qemu, TCG) with the same devices as
    QemuGuest; ovcd reaches its balloon through libvirt."""

    def __init__(self, name, run, image, deflate_on_oom=True):
        super().__init__(name, os.path.join(run, name))
        # libvirt's QEMU runs as libvirt-qemu: its files live in a directory
        # that user can reach, and libvirt relabels the copies it is given.
        os.chmod(self.dir, 0o755)
        kernel = os.path.join(self.dir, "vmlinuz")
        initrd = os.path.join(self.dir, "initramfs.img")
        shutil.copyfile(os.path.join(image, "vmlinuz"), kernel)
        shutil.copyfile(os.path.join(image, "initramfs.img"), initrd)
        xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{GUEST_MIB}</memory><currentMemory unit='MiB'>{GUEST_MIB}</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='{self.console}'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{self.serial}'/><target port='1'/></serial>
    <!-- autodeflate is libvirt's deflate-on-oom: counted in the summary -->
    <memballoon model='virtio' autodeflate='{'on' if deflate_on_oom else 'off'}'><stats period='1'/></memballoon>
  </devices>
</domain>
"""
        path = os.path.join(self.dir, "domain.xml")
        with open(path, "w") as f:
            f.write(xml)
        self.started = False
        r = subprocess.run(["virsh", "-q", "-c", LIBVIRT_URI, "create", path], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            err = (r.stderr or r.stdout).strip()
            if "mount propagation" in err:
                raise NoMountNamespace(
                    f"libvirt cannot start QEMU on this machine ({err}): libvirt puts QEMU in a private "
                    "mount namespace, which fails where / is not a mount point (a chroot or some "
                    "containers). Run scripts/demo without --libvirt: bare QEMU guests need no libvirtd")
            raise RuntimeError(f"{name}: virsh create: {err}")
        self.started = True
        self._pid = 0

    def pid(self):
        if not self._pid:
            try:
                with open(f"/run/libvirt/qemu/{self.name}.pid") as f:
                    self._pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        return self._pid

    def alive(self):
        pid = self.pid()
        return bool(pid) and os.path.exists(f"/proc/{pid}")

    def why_dead(self):
        return (f"domain's QEMU (pid {self.pid()}) is gone; see /var/log/libvirt/qemu/{self.name}.log "
                f"and {self.console}")

    def stop(self):
        if not self.started:
            return
        # Transient: destroy removes it; undefine covers a persistent one
        # of the same name and fails harmlessly otherwise.
        virsh("destroy", self.name, check=False)
        virsh("undefine", self.name, check=False)
        self.started = False


class Libvirtd:
    """qemu:///system for --libvirt: the running libvirtd, or one started
    here (virtlogd too if none runs) and stopped at the end. Shares the
    locks and the mark of tests/helpers/guest-harness.c, so that the demo
    and the integration tests may use one libvirtd side by side: whoever is
    the last user of a libvirtd started by either stops it, and a libvirtd
    started by anyone else is never stopped. The contract (files, order,
    mark, names) is written once, in docs/demo.md "One libvirtd for the
    demo and the tests"; change both sides together."""

    DECIDE = "/run/ovc-test-libvirtd.decide"
    USE = "/run/ovc-test-libvirtd.lock"
    MARK = "/run/ovc-test-libvirtd.started"

    def __init__(self):
        self.use_fd = -1
        self.started = False
        self.pids = {}

    @staticmethod
    def find(comm):
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == comm:
                        return int(d)
            except OSError:
                pass
        return 0

    @staticmethod
    def daemon(prog):
        subprocess.run([f"/usr/sbin/{prog}", "-d"], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 10
        while not Libvirtd.find(prog):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{prog} -d did not leave a {prog} running")
            time.sleep(0.1)
        return Libvirtd.find(prog)

    def start(self):
        for prog in ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", shutil.which("virsh")):
            if not prog or not os.access(prog, os.X_OK):
                raise RuntimeError("--libvirt needs libvirtd, virtlogd and virsh "
                                   "(apt-get install libvirt-daemon-system libvirt-clients)")
        decide = os.open(self.DECIDE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(decide, fcntl.LOCK_EX)
            # Taken first, so that stop() also undoes a half-done start.
            self.use_fd = os.open(self.USE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.use_fd, fcntl.LOCK_SH)
            os.makedirs("/var/log/libvirt", exist_ok=True)
            if self.find("libvirtd"):
                if not self.find("virtlogd"):  # domains cannot start without it
                    self.daemon("virtlogd")
            else:
                if not self.find("virtlogd"):
                    self.pids["virtlogd"] = self.daemon("virtlogd")
                self.pids["libvirtd"] = self.daemon("libvirtd")
                self.started = True
                virtlogd = "virtlogd" in self.pids
                try:
                    with open(self.MARK) as f:  # a crashed harness's claim stays
                        virtlogd = virtlogd or "virtlogd" in f.read()
                except OSError:
                    pass
                with open(self.MARK, "w") as f:
                    f.write("libvirtd virtlogd\n" if virtlogd else "libvirtd\n")
        finally:
            os.close(decide)
        deadline = time.monotonic() + 30
        while virsh("uri", check=False, timeout=30).strip() != LIBVIRT_URI:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{LIBVIRT_URI} does not answer within 30 s")
            time.sleep(0.3)

    @staticmethod
    def kill_and_wait(pid, timeout=15.0):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}"):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline += 5
            time.sleep(0.1)

    def stop(self):
        """Returns a line for the summary of what happened to libvirtd."""
        if self.use_fd < 0:
            return None
        decide = os.open(self.DECIDE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(decide, fcntl.LOCK_EX)
        try:
            if not self.started:
                if "virtlogd" in self.pids:  # libvirtd -d failed after it
                    self.kill_and_wait(self.pids["virtlogd"])
                return "libvirtd was running before the demo: left running" if not self.pids else None
            try:
                fcntl.flock(self.use_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return "libvirtd started by the demo is in use by a test now: that test stops it"
            for prog in ("libvirtd", "virtlogd"):
                if prog in self.pids:
                    self.kill_and_wait(self.pids[prog])
            try:
                os.unlink(self.MARK)
            except OSError:
                pass
            return "libvirtd" + (" and virtlogd" if "virtlogd" in self.pids else "") + \
                " started by the demo: stopped"
        finally:
            os.close(self.use_fd)
            self.use_fd = -1
            os.close(decide)


class Demo:
    def __init__(self, args):
        self.args = args
        self.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.build = os.path.abspath(args.builddir)
        self.ovcctl_bin = os.path.join(self.build, "daemon", "ovcctl")
        self.ovcd_bin = os.path.join(self.build, "daemon", "ovcd")
        self.vmm_bin = os.path.join(self.build, "examples", "ovc-vmm", "ovc-vmm")
        self.run = f"/run/ovc-demo-{os.getpid()}"
        self.libvirt = args.libvirt
        # libvirt domains are host-wide: a prefix with the pid keeps the
        # demo's apart from the host's own guests and from other demos.
        self.names = [f"ovc-demo-{os.getpid()}-{i}" if self.libvirt else f"demo-{i}" for i in (1, 2, 3)]
        self.libvirtd = Libvirtd() if self.libvirt else None
        self.libvirtd_note = None
        self.sock_path = os.path.join(self.run, "ovcd.sock")
        self.conf = os.path.join(self.run, "ovcd.conf")
        self.engines_dir = os.path.join(self.run, "engines")
        self.guests = []
        self.ovcd = None
        self.vmm = None
        self.progress = Progress()
        self.min_effective = None
        self.max_effective = 0.0
        self.emergencies = 0
        self.max_balloon_saved = 0
        self.max_swap_saved = self.max_engine_zero = 0
        self.vmm_seen_by_ovcd = False
        self.max_vmm_target = 0
        self.min_measured = None
        self.max_measured = 0.0
        self.vmm_rss = 0
        self.reanchors = []

    # ---- cleanup ----

    def cleanup(self, keep_logs=False):
        # ovcd first: it exits cleanly on SIGTERM (KSM knobs back) and
        # does not see its guests vanish; the rest just dies.
        procs = [p for p in (self.ovcd, self.vmm) if p]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is self.ovcd else signal.SIGKILL)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for g in self.guests:
            try:
                g.stop()
            except Exception as e:  # keep cleaning up the rest
                print(f"demo: stopping {g.name}: {e}", file=sys.stderr)
        if self.libvirtd and self.libvirtd.use_fd >= 0:
            # A domain whose `virsh create` was cut short (Ctrl-C, timeout)
            # may exist without a LibvirtGuest: by name, harmless if absent.
            started = {g.name for g in self.guests}
            for name in self.names:
                if name not in started and name in virsh("list", "--all", "--name", check=False).split():
                    virsh("destroy", name, check=False)
                    virsh("undefine", name, check=False)
        if self.libvirtd:
            self.libvirtd_note = self.libvirtd.stop()
            if self.libvirtd_note:
                print(f"demo: {self.libvirtd_note}")
        if keep_logs and os.path.isdir(self.run):
            dest = f"/tmp/ovc-demo-{os.getpid()}-logs"
            shutil.copytree(self.run, dest, ignore=shutil.ignore_patterns("*.sock", "*.qmp"),
                            ignore_dangling_symlinks=True, dirs_exist_ok=True)
            print(f"demo: logs kept in {dest}", file=sys.stderr)
        shutil.rmtree(self.run, ignore_errors=True)

    # ---- helpers ----

    def ovcctl(self, *args, check=True):
        r = subprocess.run([self.ovcctl_bin, "--socket", self.sock_path, *args],
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"ovcctl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def status(self):
        return json.loads(self.ovcctl("--json", "status"))

    def guests_json(self):
        return json.loads(self.ovcctl("--json", "guests"))["guests"]

    def qemu_rss(self):
        """What the three QEMU processes really hold (VmRSS, QEMU's own
        memory included): the measured side of the model ovcd reports."""
        return sum(g.rss() for g in self.guests)

    def configured(self):
        """The demo's three guests' memory, whatever else ovcd may count."""
        return len(self.guests) * GUEST_MIB * MIB

    def host_base(self):
        """MemAvailable as it would be without the demo's guests: what the
        rest of the host leaves. Other work on a shared machine moves it;
        the budget is measured from it."""
        vmm = rss_of(self.vmm.pid) if self.vmm and self.vmm.poll() is None else 0
        return meminfo("MemAvailable") + self.qemu_rss() + vmm

    def reanchor(self):
        """Keep the guests' budget at BUDGET when other work on the host
        takes or gives back memory: rewrite the watermarks and reload ovcd
        (SIGHUP semantics: a bad file would be refused)."""
        base = self.host_base()
        if abs(base - self.avail0) < 384 * MIB:
            return
        old, self.avail0 = self.avail0, base
        self.write_config()
        self.ovcctl("reload")
        self.reanchors.append(f"{elapsed():.0f} s: other work moved MemAvailable by {fmt_size(base - old)}; "
                              f"watermarks re-anchored, ovcctl reload")

    def check_alive(self):
        for g in self.guests:
            if not g.alive():
                raise RuntimeError(f"{g.name}: {g.why_dead()}")
        if self.ovcd and self.ovcd.poll() is not None:
            raise RuntimeError(f"ovcd exited (status {self.ovcd.returncode}); see {self.run}/ovcd.log")

    # ---- set-up ----

    def remove_leftovers(self):
        """Domains of demos that died without cleaning up (SIGKILL):
        ovc-demo-<pid>-<n> whose <pid> is gone."""
        for name in virsh("list", "--all", "--name").split():
            m = re.fullmatch(r"ovc-demo-(\d+)-\d+", name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                self.progress.done(f"removing {name}, left over by a demo that was killed")
                virsh("destroy", name, check=False)
                virsh("undefine", name, check=False)

    def boot(self):
        os.makedirs(os.path.join(self.run, "qmp"))
        # 0711: libvirt's QEMU (user libvirt-qemu) must reach the guests'
        # directories, nobody needs to list the run directory.
        os.chmod(self.run, 0o711 if self.libvirt else 0o700)
        self.progress.show("building the guest image")
        image = subprocess.run([os.path.join(self.root, "scripts", "build-guest-image"),
                                os.path.join(self.build, "guest-image")],
                               check=True, capture_output=True, text=True).stdout.strip()
        if self.libvirt:
            self.progress.show(f"connecting to {LIBVIRT_URI} (starting libvirtd if none runs)")
            self.libvirtd.start()
            self.progress.done(f"{LIBVIRT_URI}: libvirtd " +
                               ("started by the demo" if self.libvirtd.started else "was running already"))
            self.remove_leftovers()
        self.avail0 = meminfo("MemAvailable")
        self.total = meminfo("MemTotal")
        kind = "libvirt domains" if self.libvirt else "QEMU guests"
        for name in self.names:
            self.progress.show(f"starting {kind}: {name}")
            self.guests.append((LibvirtGuest if self.libvirt else QemuGuest)(
                name, self.run, image, deflate_on_oom=not self.args.no_deflate_on_oom))
        # The 4th guest: a raw KVM VMM whose RAM the libovc engine runs.
        self.vmm_log = os.path.join(self.run, "ovc-vmm.log")
        with open(self.vmm_log, "wb") as log:
            # It swaps to a file in the run dir and publishes its engine where
            # ovcd looks ([engine] dir), so ovcd counts it and steers it.
            os.makedirs(self.engines_dir, exist_ok=True)
            self.vmm = subprocess.Popen([self.vmm_bin, "--mem", "1GiB", "--swap-dir", self.run,
                                         "--publish", self.engines_dir, "--check"],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
        up = set()
        deadline = time.monotonic() + 240
        while len(up) < len(self.guests):
            self.check_alive()
            for g in self.guests:
                if g.name not in up and g.ready():
                    up.add(g.name)
            self.progress.show(f"booting {len(self.guests)} {kind} (TCG, {GUEST_MIB} MiB each) "
                               f"and ovc-vmm: {len(up)}/{len(self.guests)} up")
            if time.monotonic() > deadline:
                raise RuntimeError("guests did not boot within 240 s; see their console.log")
            time.sleep(0.3)
        self.progress.done(f"{len(self.guests)} guests booted: " +
                           ", ".join(f"{g.name} (pid {g.pid()})" for g in self.guests))

    def write_config(self):
        # The guests may use BUDGET beyond what was available before they
        # booted: MemAvailable under low means pressure. high sits near the
        # start, so that balloons come back only when the guests use almost
        # nothing; in between ovcd holds (hysteresis). The reserve makes the
        # provisioned ratio count only BUDGET as the host's memory for guests.
        low = self.avail0 - BUDGET
        high = self.avail0 - 128 * MIB
        reserve = self.total - BUDGET
        text = f"""# written by scripts/demo: the guests get {fmt_size(BUDGET)} of this host between them
[host]
interval = 1s
reserve = {reserve // MIB}MiB
low = {low // MIB}MiB
high = {high // MIB}MiB
# Only MemAvailable decides: other work on a shared machine must not.
psi_some = 0%
psi_full = 0%
psi_trigger_stall = 0
[balloon]
# The guests report every second (as libvirt's <stats period='1'/>).
stats_period = 1s
stale_after = 5s
# The demo plays in two minutes what a host sees over an hour: the
# policy's clocks run 3 to 20 times faster (defaults: headroom_decay 10min,
# idle_after 30s, short_decay 10min); its other keys keep their defaults.
headroom_decay = 30s
idle_after = 10s
short_decay = 30s
[ksm]
# Left alone: KSM is host-wide, and the demo changes nothing outside itself.
enable = no
[engine]
# ovc-vmm publishes its engine here: ovcd lists it and sets its reclaim target.
dir = {self.engines_dir}
[control]
socket = {self.sock_path}
"""
        with open(self.conf + ".new", "w") as f:
            f.write(text)
        os.rename(self.conf + ".new", self.conf)

    def start_ovcd(self):
        self.avail0 = self.host_base()
        self.write_config()
        log = open(os.path.join(self.run, "ovcd.log"), "wb")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        if self.libvirt:
            # --only: the demo's domains, never the host's own guests.
            drivers = ["--libvirt", LIBVIRT_URI, "--only", f"ovc-demo-{os.getpid()}-*"]
        else:
            drivers = ["--no-libvirt", "--qmp-dir", os.path.join(self.run, "qmp")]
        self.ovcd = subprocess.Popen([self.ovcd_bin, "-c", self.conf, *drivers],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                     preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            self.check_alive()
            self.progress.show("starting ovcd")
            try:
                if os.path.exists(self.sock_path):
                    st = self.status()
                    if st.get("guests", 0) >= len(self.guests) and st.get("ticks", 0) >= 2:
                        break
            except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ovcd did not manage the {len(self.guests)} guests within 60 s; "
                                   f"see {self.run}/ovcd.log")
            time.sleep(0.5)
        self.progress.done(f"ovcd runs (pid {self.ovcd.pid}), config {self.conf}")
        print(f"demo: guests configured {fmt_size(self.configured())} in all; the demo lets them "
              f"have {fmt_size(BUDGET)}:\n"
              f"demo:   [host] low = MemAvailable without the demo's guests ({fmt_size(self.avail0)}) - {fmt_size(BUDGET)}, "
              f"reserve = MemTotal - {fmt_size(BUDGET)} (host watermarks, no cgroup limit;\n"
              f"demo:   re-anchored with ovcctl reload when other work on the host moves MemAvailable)")

    # ---- the load ----

    def observe(self):
        st = self.status()
        eff = st["effective_ratio"]
        if self.min_effective is None or eff < self.min_effective:
            self.min_effective = eff
        self.max_effective = max(self.max_effective, eff)
        self.max_balloon_saved = max(self.max_balloon_saved, st["savings"]["balloon_bytes"])
        self.max_swap_saved = max(self.max_swap_saved, st["savings"].get("swap_bytes", 0))
        self.max_engine_zero = max(self.max_engine_zero, st["savings"].get("engine_zero_bytes", 0))
        measured = self.configured() / max(self.qemu_rss(), 1)
        if self.min_measured is None or measured < self.min_measured:
            self.min_measured = measured
        self.max_measured = max(self.max_measured, measured)
        if self.vmm and self.vmm.poll() is None:
            self.vmm_rss = rss_of(self.vmm.pid) or self.vmm_rss
            for g in self.guests_json():
                if g["name"].startswith("ovc-vmm") and g.get("engine"):
                    self.vmm_seen_by_ovcd = True
                    t = g["engine"].get("reclaim_target_bytes") or 0
                    self.max_vmm_target = max(self.max_vmm_target, t)
        return st

    def ours(self, guests):
        """ovcd's guests that are the demo's three (it may count others,
        such as an embedded engine, in its own figures)."""
        return [g for g in guests if g["name"] in self.names]

    def show(self, phase, note, seconds, until=None):
        """Refresh `ovcctl top` once a second for @seconds (or until
        @until() holds after at least 3 s), under a header."""
        end = time.monotonic() + seconds
        start = time.monotonic()
        n = 0
        while True:
            self.check_alive()
            self.reanchor()
            self.observe()
            top = self.ovcctl("top", "--iterations", "1")
            header = (f"=== ovc demo  {elapsed():5.1f} s   phase {phase}: {note}\n"
                      f"    3 {'libvirt domains' if self.libvirt else 'QEMU guests'} x {GUEST_MIB} MiB, "
                      f"host budget {fmt_size(BUDGET)}, measured ratio {self.configured() / max(self.qemu_rss(), 1):.2f} "
                      f"(configured / QEMU RSS); "
                      f"ovc-vmm (4th guest) {'running' if self.vmm.poll() is None else 'done'}\n")
            if self.reanchors:
                header += "    " + self.reanchors[-1] + "\n"
            if TTY:
                sys.stdout.write("\033[H\033[2J" + header + "\n" + top)
                sys.stdout.flush()
            elif n % 5 == 0:
                print(header + top, flush=True)
            n += 1
            now = time.monotonic()
            if now >= end or (until and now - start >= 3 and until()):
                break
            time.sleep(1)
        if not TTY:
            return
        print()

    def all_guests(self, cmd):
        for g in self.guests:
            g.cmd(cmd, timeout=120)

    def settled(self):
        """No balloon still moving toward its target."""
        return all(abs(g["current_bytes"] - g["target_bytes"]) < 8 * MIB for g in self.ours(self.guests_json()))

    def grow(self, guests, steps, phase, note):
        """Each of @guests allocates 32 MiB @steps times, one step a
        second, all at once, while `ovcctl top` is shown: a guest's memory
        grows as a real workload's does, at a pace a 1 s control loop can
        follow (one 384 MiB mmap in a ballooned guest fails outright
        without deflate-on-oom: the balloon took it out of MemTotal)."""
        err = []

        def run(g):
            try:
                for _ in range(steps):
                    g.cmd("alloc 32M", timeout=60)
                    time.sleep(1.0)
            except Exception as e:  # reported by the main thread
                # An OOM kill takes the workload and the reply with it
                # (the guest's init restarts it): say so, not "no reply".
                try:
                    kills = g.meminfo().get("oom_kill", 0)
                except Exception:
                    kills = 0
                err.append(RuntimeError(f"{g.name}: its OOM killer killed the workload ({kills} OOM kills); "
                                        f"see {g.console}") if kills > 0 else e)

        threads = [threading.Thread(target=run, args=(g,)) for g in guests]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                self.show(phase, note, 2)
        finally:
            for t in threads:
                t.join()
        if err:
            raise err[0]

    def load(self):
        spike = self.guests[-1]
        self.phase_log = []

        def phase(name, note):
            self.phase_log.append((elapsed(), name, note))

        phase("1", "each guest allocates and touches 384 MiB")
        self.grow(self.guests, 12, "1 allocate", "each guest grows to 384 MiB in 32 MiB steps: ovcd inflates spare")
        self.show("1 allocate", "each guest allocated 384 MiB: host over budget, ovcd inflates spare", 12,
                  self.settled)

        phase("2", f"{spike.name} spikes by 320 MiB in 32 MiB steps")
        self.grow([spike], 10, "2 spike", f"{spike.name} grows by 32 MiB steps: ovcd deflates it (emergency)")
        self.show("2 spike", f"{spike.name} holds 704 MiB of touched memory", 5)

        phase("3", "every guest frees its memory")
        self.all_guests("free")
        self.show("3 free", "guests freed their memory: ovcd balloons what they no longer use", 25,
                  lambda: self.status()["level"] != "pressure" and self.settled())

        phase("4", "idle")
        # Until the balloons have taken back what the learned headroom
        # no longer keeps (it halves every headroom_decay), 45 s at most.
        self.show("4 idle", "guests idle: ovcd takes back what their headroom no longer keeps", 45,
                  lambda: self.configured() / max(self.qemu_rss(), 1) >= 2.2 and self.settled())

    # ---- the end ----

    def summary(self):
        st = self.observe()
        guests = self.ours(self.guests_json())
        self.emergencies = sum(g["emergencies"] for g in guests)
        ooms, self_deflates = {}, {}
        for g in self.guests:
            mi = g.meminfo()
            ooms[g.name] = mi["oom_kill"]
            self_deflates[g.name] = mi.get("oom_deflate", -1)
        # Wait for ovc-vmm (it checks every page of its guest at the end).
        while self.vmm.poll() is None:
            self.progress.show("waiting for ovc-vmm to finish checking its guest's pages")
            self.check_alive()
            self.observe()
            time.sleep(1)
        if TTY:
            self.progress.done("ovc-vmm finished")
        with open(self.vmm_log) as f:
            vmm_out = f.read().splitlines()
        st = self.observe()
        sav = st["savings"]
        eff, prov = st["effective_ratio"], st["provisioned_ratio"]
        vmm_line = next((l.strip() for l in vmm_out if l.startswith("ovc-vmm:")), "(no result line)")
        vmm_zero = next((l.split() for l in vmm_out if "zero pages shared" in l), None)
        vmm_zero = (f"{fmt_size(int(vmm_zero[3]) * os.sysconf('SC_PAGE_SIZE'))} shared "
                    f"({vmm_zero[3]} pages)") if vmm_zero and len(vmm_zero) > 3 and vmm_zero[3].isdigit() else "n/a"
        vmm_gave = next((l.split("(")[1].rstrip(")").strip() for l in vmm_out if "gave back" in l), "")
        vmm_swap = next((l.split() for l in vmm_out if "pages swapped out / in" in l), None)
        vmm_swap = (f"{vmm_swap[5]} pages swapped out, {vmm_swap[7]} faulted back"
                    if vmm_swap and len(vmm_swap) > 7 else "n/a")
        vmm_ok = self.vmm.returncode == 0 and any("mismatches: 0" in l for l in vmm_out)
        rss = self.qemu_rss()
        conf = self.configured()
        measured = conf / max(rss, 1)
        run_s = elapsed()
        kind = "libvirt domains (type qemu, TCG)" if self.libvirt else "bare QEMU processes (TCG)"
        driver = "libvirt" if self.libvirt else "QMP"
        n_self = sum(v for v in self_deflates.values() if v > 0)
        deflate_known = all(v >= 0 for v in self_deflates.values())
        others = st.get("guests", len(guests)) - len(guests)

        print("\n==================== ovc demo: summary ====================")
        print(f"guests              3 x {GUEST_MIB} MiB as {kind}, balloons driven by ovcd ({driver} driver)")
        print(f"                    + 1 ovc-vmm x 1 GiB (KVM; its RAM run by the libovc engine)")
        print(f"configured          {fmt_size(conf)}: the 3 guests' memory")
        print(f"memory for guests   {fmt_size(BUDGET)}: what the demo lets them have together "
              f"(host watermarks in ovcd.conf, no cgroup limit)")
        print(f"measured RSS        {fmt_size(rss)}: what the 3 QEMU processes hold in host RAM now "
              f"(VmRSS, QEMU's own memory included)")
        print(f"OVERCOMMIT RATIO    {measured:.2f} = configured / measured RSS "
              f"(lowest during the run {self.min_measured:.2f}, highest {self.max_measured:.2f})")
        if self.libvirt:
            model = "the RSS libvirt reports for each domain (measured)"
        else:
            model = "what the balloons leave each guest (ovcd's model: QMP gives no RSS)"
        print(f"ovcd's ratios       effective {eff:.2f} = configured / {fmt_size(st['guests_backing_bytes'])}, "
              f"{model}; lowest {self.min_effective:.2f}")
        print(f"                    provisioned {prov:.2f} = configured / memory for guests" +
              (f"   (ovcd counts {others} more guest(s) than the demo's 3 in these)" if others > 0 else ""))
        print(f"saved by balloon    {fmt_size(sav['balloon_bytes'])} now, "
              f"{fmt_size(self.max_balloon_saved)} at most")
        print(f"saved by zero pages {fmt_size(self.max_engine_zero)} at most, as ovcd saw ovc-vmm's engine share them "
              f"(KSM off in the demo);\n                    ovc-vmm's own count: {vmm_zero}{', ' + vmm_gave if vmm_gave else ''}")
        print(f"saved by KSM        {fmt_size(sav['ksm_bytes'])} (host-wide KSM counters: the demo leaves KSM alone, "
              f"so this is other work's; ovcd still subtracts it in its effective ratio)")
        print(f"saved by swap       {fmt_size(self.max_swap_saved)} at most, as ovcd saw it (ovc-vmm's engine "
              f"swapping cold guest pages; ovc-vmm has ended, so {fmt_size(sav['swap_bytes'])} now); "
              f"ovc-vmm: {vmm_swap}")
        print(f"ovcd and ovc-vmm    " + (f"ovcd listed ovc-vmm's published engine as a guest; the highest reclaim "
              f"target it set was {fmt_size(self.max_vmm_target)}" if self.vmm_seen_by_ovcd else "ovcd never listed ovc-vmm's engine"))
        print(f"emergency deflates  {self.emergencies}: ovcd gave a guest memory back at once when it ran short")
        print("guest OOM kills     " + ", ".join(f"{n} {v}" for n, v in ooms.items()) +
              "   (/proc/vmstat oom_kill in each guest)")
        if self.args.no_deflate_on_oom:
            print("guest self-deflates none possible: deflate-on-oom off in this run (--no-deflate-on-oom), "
                  "so only ovcd deflates")
        else:
            print(f"guest self-deflates {n_self if deflate_known else 'n/a'}: " +
                  ", ".join(f"{n} {v if v >= 0 else 'n/a'}" for n, v in self_deflates.items()) +
                  "   (deflate-on-oom: times a guest's balloon driver")
            print("                    took 1 MiB back by itself, overriding ovcd's target, where its OOM killer "
                  "would have run;\n                    counted in the guest by a kprobe on virtio_balloon_oom_notify; "
                  "0 means ovcd deflated in time)")
        print(f"ovc-vmm             {vmm_line}")
        print(f"                    {'every page checked, 0 mismatches' if vmm_ok else 'FAILED: see ' + self.vmm_log}"
              f"; RSS {fmt_size(self.vmm_rss)} at the last look before it ended (configured / RSS = "
              f"{GIB / max(self.vmm_rss, 1):.2f}); not in the measured ratio above")
        print(f"watermarks moved    {len(self.reanchors)} times for other work on the host" +
              "".join(f"\n                    {r}" for r in self.reanchors))
        print(f"run time            {run_s:.0f} s")
        print("==========================================================")

        failures = []
        if measured < 2.0:
            failures.append(f"measured overcommit ratio {measured:.2f} < 2.0")
        if any(ooms.values()):
            failures.append("guest OOM kills: " + ", ".join(f"{n} {v}" for n, v in ooms.items() if v))
        if n_self:
            # Each one was a guest one allocation away from its OOM killer:
            # without deflate-on-oom it would have been a kill.
            failures.append(f"{n_self} guest self-deflates: ovcd did not deflate in time")
        if not vmm_ok:
            failures.append(f"ovc-vmm failed (exit {self.vmm.returncode}); see {self.vmm_log}")
        self.verdict = (f"measured overcommit ratio {measured:.2f} >= 2.0, no guest OOM kill" +
                        (", 0 self-deflates (no guest had to deflate its own balloon)"
                         if deflate_known and not self.args.no_deflate_on_oom else "") +
                        (" (deflate-on-oom off: only ovcd deflated)" if self.args.no_deflate_on_oom else ""))
        return failures

    def keep(self):
        s = self.sock_path
        print(f"\ndemo: --keep: everything keeps running; run dir {self.run}")
        print("demo: try:")
        n1 = self.guests[0].name
        for c in ("top", "status", "guests", "status --json", f"set {n1} target 50%", f"set {n1} target none",
                  "reload"):
            print(f"  {self.ovcctl_bin} --socket {s} {c}")
        print(f"  guests' workload (ping, meminfo, alloc 256M, free): unix socket {self.guests[0].dir}/serial.sock")
        print(f"  less {self.run}/ovcd.log")
        print("demo: press Ctrl-C to stop and clean up")
        try:
            while all(g.alive() for g in self.guests) and self.ovcd.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def main():
    ap = argparse.ArgumentParser(description="ovc demo on real guests")
    ap.add_argument("--builddir", default="build")
    ap.add_argument("--keep", action="store_true", help="keep guests and ovcd running at the end")
    ap.add_argument("--no-deflate-on-oom", action="store_true",
                    help="guests without deflate-on-oom: no OOM kill only if ovcd deflates in time")
    ap.add_argument("--libvirt", action="store_true",
                    help=f"run the 3 guests as libvirt domains on {LIBVIRT_URI} (libvirtd started if none runs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("demo: must run as root (guests, ovcd's control socket under /run"
              f"{', libvirtd' if args.libvirt else ''})", file=sys.stderr)
        return 1
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("demo: /dev/kvm is not usable; ovc-vmm needs KVM", file=sys.stderr)
        return 1
    demo = Demo(args)

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    failed = False
    try:
        demo.boot()
        demo.start_ovcd()
        demo.load()
        failures = demo.summary()
        if failures:
            print("demo: FAILED: " + "; ".join(failures), file=sys.stderr)
            failed = True
            return 1
        print(f"demo: OK: {demo.verdict}")
        if args.keep:
            demo.keep()
        return 0
    except KeyboardInterrupt:
        print("\ndemo: interrupted; cleaning up", file=sys.stderr)
        return 130
    except NoMountNamespace as e:
        print(f"\ndemo: --libvirt cannot run here: {e}", file=sys.stderr)
        return 3
    except Exception as e:
        failed = True
        print(f"\ndemo: FAILED: {e}", file=sys.stderr)
        try:
            with open(os.path.join(demo.run, "ovcd.log")) as f:
                tail = f.read().splitlines()[-15:]
            print("demo: last lines of ovcd's log:\n  " + "\n  ".join(tail), file=sys.stderr)
        except OSError:
            pass
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        demo.cleanup(keep_logs=failed)


if __name__ == "__main__":
    sys.exit(main())
