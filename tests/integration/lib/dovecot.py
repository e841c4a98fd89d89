"""A private Dovecot for tests and benchmarks that compare mailaccess with it.

`Dovecot` writes its own config into a temp dir and runs `dovecot -c CONF -F` on free loopback
ports (IMAP, POP3, LMTP as asked), with Maildir storage under `<tmp>/mail/<user>/Maildir`, owned by
`nobody`. It never touches the system's Dovecot config or ports 143/110. Dovecot needs root to
start (it switches to the mail user itself); `available()` says whether it can run here.

`process_tree()`, `cpu_seconds()` and `pss_kib()` measure a server's processes (Dovecot: the
master and every process it forked; mailaccess: its one process) the same way for both.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import time

# The shared harness beside this file: loopback address and free ports, one copy for both servers.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mailserver import HOST, free_ports  # noqa: E402,F401

START_TIMEOUT = 30.0

# The packages a full comparison needs, all from Debian 12.
PACKAGES = ("dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd", "dovecot-fts-xapian")


def available():
    """(ok, why not): Dovecot is installed and we can start it (root)."""
    if shutil.which("dovecot") is None:
        return False, "dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return False, "a private Dovecot needs root"
    return True, ""


def fts_xapian_installed():
    for d in ("/usr/lib/dovecot/modules", "/usr/lib64/dovecot/modules"):
        if os.path.exists(os.path.join(d, "lib21_fts_xapian_plugin.so")):
            return True
    return False


class Dovecot:
    """A private Dovecot on free loopback ports.

    users: {name: password}. protocols: any of "imap", "pop3", "lmtp"; `port[protocol]` is where
    each listens. fts: enable fts-xapian (indexes built with `index()`). max_connections: the
    process and per-user connection limits are raised to this.
    """

    def __init__(self, users, protocols=("imap",), fts=False, max_connections=100,
                 prefix="mailaccess-dovecot-"):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.tmp, 0o755)
        self.protocols = list(protocols)
        self.port = dict(zip(self.protocols, free_ports(len(self.protocols))))
        self.nobody = pwd.getpwnam("nobody")
        self.mail_root = os.path.join(self.tmp, "mail")
        os.makedirs(self.mail_root)
        os.chown(self.mail_root, self.nobody.pw_uid, self.nobody.pw_gid)
        self.proc = None
        with open(os.path.join(self.tmp, "passwd"), "w") as f:
            for user, password in users.items():
                f.write(f"{user}:{{PLAIN}}{password}::::::\n")
        self.conf = os.path.join(self.tmp, "dovecot.conf")
        limit = max(100, int(max_connections) + 50)
        listeners = []
        if "imap" in self.protocols:
            listeners.append(f"""service imap-login {{
  chroot =
  process_limit = {limit}
  inet_listener imap {{
    address = {HOST}
    port = {self.port['imap']}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = {limit}
}}""")
        if "pop3" in self.protocols:
            listeners.append(f"""service pop3-login {{
  chroot =
  process_limit = {limit}
  inet_listener pop3 {{
    address = {HOST}
    port = {self.port['pop3']}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service pop3 {{
  process_limit = {limit}
}}""")
        if "lmtp" in self.protocols:
            listeners.append(f"""service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {self.port['lmtp']}
  }}
}}""")
        fts_conf = ""
        if fts:
            fts_conf = """mail_plugins = $mail_plugins fts fts_xapian
plugin {
  fts = xapian
  fts_xapian = partial=3 full=20 verbose=0
  fts_autoindex = yes
  fts_enforced = yes
}
service indexer-worker {
  vsz_limit = 2G
}
"""
        with open(self.conf, "w") as f:
            f.write(f"""base_dir = {self.tmp}/run
state_dir = {self.tmp}/state
log_path = {self.tmp}/dovecot.log
protocols = {" ".join(self.protocols)}
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {self.nobody.pw_uid}
default_login_user = dovenull
default_internal_user = dovecot
default_client_limit = {max(1000, 2 * limit)}
mail_max_userip_connections = {limit}
pop3_uidl_format = %08Xu%08Xv
postmaster_address = postmaster@localhost
passdb {{
  driver = passwd-file
  args = {self.tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={self.nobody.pw_uid} gid={self.nobody.pw_gid} home={self.mail_root}/%u
}}
service anvil {{
  chroot =
}}
service auth {{
  client_limit = {max(1000, 3 * limit)}
}}
{fts_conf}
""" + "\n".join(listeners) + "\n")

    def maildir(self, user):
        return os.path.join(self.mail_root, user, "Maildir")

    def give_to_mail_user(self):
        """Hands the mail tree to the mail user (Dovecot refuses to act as root on it)."""
        uid, gid = self.nobody.pw_uid, self.nobody.pw_gid
        os.chown(self.mail_root, uid, gid)
        for dirpath, dirnames, filenames in os.walk(self.mail_root):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), uid, gid)

    def start(self):
        self.proc = subprocess.Popen(["dovecot", "-c", self.conf, "-F"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.port.values())
        while pending:
            for port in list(pending):
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    pending.discard(port)
                except OSError:
                    pass
            if not pending:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("dovecot did not start: %s" % self.log())
            try:
                self.proc.wait(timeout=0.05)  # bounded wait; returns early only if it died
            except subprocess.TimeoutExpired:
                pass
        return self

    def doveadm(self, *args, timeout=600):
        return subprocess.run(["doveadm", "-c", self.conf] + list(args), capture_output=True,
                              timeout=timeout)

    def log(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- measuring a server's processes -------------------------------------------------------------

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return data[data.rindex(")") + 2:].split()


def process_tree(root):
    """root and every process descended from it (a snapshot of /proc)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    for _ in range(100000):
        if not todo:
            break
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root):
    """User + system CPU seconds of root's process tree, including children it has reaped
    (Dovecot's master reaps its login processes: their time lands in its cutime/cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # Fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        total += int(f[11]) + int(f[12])
        if pid == root:
            total += int(f[13]) + int(f[14])
    return total / tick


def pss_kib(root):
    """Proportional set size of root's process tree in KiB (shared pages split between the
    processes that map them, so a forked server is not counted once per process)."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def rss_kib(root):
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total
