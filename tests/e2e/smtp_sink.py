"""An SMTP relay for the end-to-end tests: Debian's aiosmtpd, requiring the login the alerts'
msmtp is given (SINK_LOGIN, SINK_PASSWORD in its environment, never its arguments), each
message accepted into a Maildir. Runs with the system python3 until it is terminated.

    /usr/bin/python3 -I smtp_sink.py MAILDIR PORT ADDRESS...
"""

import os
import signal
import sys
from mailbox import Maildir

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

LOGIN = os.environ["SINK_LOGIN"].encode()
PASSWORD = os.environ["SINK_PASSWORD"].encode()


def authenticate(server, session, envelope, mechanism, data):
    return AuthResult(
        success=isinstance(data, LoginPassword) and (data.login, data.password) == (LOGIN, PASSWORD)
    )


def main() -> None:
    maildir, port, addresses = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait
    Maildir(maildir, create=True)
    controllers = [
        Controller(
            Mailbox(maildir),
            hostname=address,
            port=port,
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=False,  # loopback and the sandbox's links only
        )
        for address in addresses
    ]
    for controller in controllers:
        controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for controller in controllers:
        controller.stop()


if __name__ == "__main__":
    main()
