"""`make run`: the portal on http://127.0.0.1:5000 and its worker, for development."""

import os
import subprocess
import sys

from portal import create_app

BANNER = """
  Chotto is running on {base}  (development mode: test-inbox carrier, development mailbox,
  payment sandbox: Credit and billing → Buy credit works without real money)

  To log in, either
    - open {base}/signup and create an account; the verification e-mail is in the
      development mailbox ({base}/dev/mailbox) and the SMS code in the Test inbox page, or
    - create one from another terminal:
        echo 'a long passphrase of yours' | PORTAL_ENV=development .venv/bin/portal accounts create you@example.com \\
             --password-stdin --verified --phone +819012345678
      then sign in at {base}/login.

  API: create a credential at {base}/credentials, or
        .venv/bin/portal keys create you@example.com --name dev --test
      then send a test SMS (it lands in the Test inbox):
        curl -u SID:TOKEN -d recipient=+819012345678 -d sender=Chotto -d message=hello {base}/sms/messages/
      Reference: {base}/api/docs

  Usage history: fill it with demo messages and calls over 13 months (not booked in the ledger):
        PORTAL_ENV=development .venv/bin/portal demo seed you@example.com --usage 50000
      then open {base}/usage.

  Stop with Ctrl+C.
"""


def main() -> None:
    app = create_app()
    worker = subprocess.Popen([sys.executable, "-m", "portal.cli", "worker"], env=os.environ.copy())
    try:
        print(BANNER.format(base=app.config["BASE_URL"]), flush=True)
        app.run(host="127.0.0.1", port=5000, threaded=True, use_reloader=False)
    finally:
        worker.terminate()
        worker.wait(timeout=10)


if __name__ == "__main__":
    main()
