"""A private Postfix instance in a temp dir: its own config_directory, queue_directory and
log, SMTP on a free loopback port, no relaying. It never touches the system's default instance
(/etc/postfix): every command gets `-c <config_directory>`."""

import os
import pwd
import shutil
import subprocess
import time

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"


def available():
    return os.path.exists(POSTFIX) and os.path.isdir("/usr/lib/postfix/sbin")


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{smtp_addr} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """`settings` are extra main.cf lines (transports, maps)."""

    def __init__(self, root, smtp_port, settings):
        self.root = root
        self.config_dir = os.path.join(root, "etc")
        self.queue_dir = os.path.join(root, "queue")
        self.data_dir = os.path.join(root, "data")
        self.log_file = os.path.join(root, "maillog")
        self.smtp_port = smtp_port
        os.makedirs(self.config_dir, exist_ok=True)
        # data_directory belongs to the mail owner (master.lock, caches).
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        # The queue must not be group/world writable; postfix creates its subdirectories.
        os.makedirs(self.queue_dir, mode=0o755, exist_ok=True)
        main = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.data_dir}",
            "command_directory = /usr/sbin",
            "daemon_directory = /usr/lib/postfix/sbin",
            "meta_directory = /etc/postfix",
            "shlib_directory = /usr/lib/postfix",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"maillog_file_prefixes = {root}",
            f"maillog_file = {self.log_file}",
            "myhostname = mx.postfix.test",
            "mydomain = postfix.test",
            "myorigin = postfix.test",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "relay_domains =",
            "relayhost =",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions = reject_unauth_destination",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "biff = no",
            "smtputf8_enable = no",
            # Never queue for long in a test: failures show up as bounces in the log at once.
            "maximal_queue_lifetime = 0",
            "bounce_queue_lifetime = 0",
            "lmtp_connect_timeout = 10s",
        ] + list(settings)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write("\n".join(main) + "\n")
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtp_addr=f"127.0.0.1:{smtp_port}"))
        self.started = False

    def cmd(self, *args, check=True):
        return subprocess.run([POSTFIX, "-c", self.config_dir, *args], capture_output=True,
                              timeout=60, check=check)

    def start(self):
        r = self.cmd("start", check=False)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s %s\n%s" % (
                r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), self.log()))
        self.started = True

    def stop(self):
        if self.started:
            self.cmd("stop", check=False)
            self.started = False

    def log(self):
        try:
            with open(self.log_file, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for_status(self, recipients, timeout=60.0):
        """Waits (bounded) until the log has a final status for each recipient; returns
        {recipient: status}. The log is the only signal Postfix gives about delivery."""
        deadline = time.monotonic() + timeout
        found = {}
        while True:
            for line in self.log().splitlines():
                for r in recipients:
                    if f"to=<{r}>" in line and " status=" in line:
                        status = line.split(" status=", 1)[1].split(" ", 1)[0]
                        if status in ("sent", "bounced", "expired"):
                            found[r] = status
                        elif status == "deferred":
                            found.setdefault(r, "deferred")
            if all(found.get(r) in ("sent", "bounced", "expired") for r in recipients):
                return found
            if time.monotonic() > deadline:
                return found
            # Postfix offers no completion signal besides its log; re-read it shortly.
            time.sleep(0.1)
