"""The demo's outside world: local fakes of NOWPayments and Kinguin whose balances drift and
which now and then answer 429 or 500, and a small app health endpoint for a probe.

One server (tests/fakes/provider_fake.py, imported, not copied) on 127.0.0.1:PORT serves:

    GET /v1/balance            NOWPayments (header x-api-key: $TELLTALE_DEMO_NP_KEY)
    GET /esa/api/v1/balance    Kinguin (header X-Api-Key: $TELLTALE_DEMO_KG_KEY)
    GET /health                the app's health: 200 {"status": "ok"}, 503 now and then
    POST /_balances, /_mode    the fake's control endpoints (see provider_fake.py)

    python scripts/demo/apis.py [--port 29100] [--host 127.0.0.1]

Drift: every DRIFT_SECONDS balances are spent down a little and topped up when low. A
balance set from outside through POST /_balances (a test draining it) is left alone from
then on: drift stops for that provider. Errors: every ERROR_EVERY_SECONDS one provider
answers 429 (rate limited) or 500 for ERROR_SECONDS; the health endpoint answers 503 for
ERROR_SECONDS every 4 × ERROR_EVERY_SECONDS.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "fakes"))
from provider_fake import KG_SUFFIX, NP_SUFFIX, ProviderFake  # noqa: E402

DRIFT_SECONDS = float(os.environ.get("TELLTALE_DEMO_DRIFT_EVERY", "5"))
ERROR_EVERY_SECONDS = float(os.environ.get("TELLTALE_DEMO_ERROR_EVERY", "90"))
ERROR_SECONDS = float(os.environ.get("TELLTALE_DEMO_ERROR_SECONDS", "20"))

# Start balances and the level below which a wallet is topped up again.
NP_START = {"btc": 0.8, "eth": 6.0, "usdttrc20": 2500.0}
NP_TOP_UP = {"btc": 0.2, "eth": 1.5, "usdttrc20": 600.0}
KG_START, KG_TOP_UP = 1500.0, 300.0
HEALTH_OK = {"status": "ok"}


def say(message: str) -> None:
    print(f"[apis] {message}", flush=True)


class Drift:
    """Spends the balances down and tops them up, unless someone else set them."""

    def __init__(self, fake: ProviderFake) -> None:
        self.fake = fake
        self.np = {c: {"amount": a, "pendingAmount": 0} for c, a in NP_START.items()}
        self.kg = KG_START
        self.np_frozen = self.kg_frozen = False
        fake.set_balances(np=self.np, kg=self.kg)

    def step(self) -> None:
        self.fake.clear()  # the fake records every request; the demo never reads them
        with self.fake.lock:  # check and set at once: a balance set from outside is never overwritten
            if not self.np_frozen and self.fake.np_balances is not self.np:
                self.np_frozen = True
                say("NOWPayments balances were set from outside: drift stops for them")
            if not self.kg_frozen and self.fake.kg_balance != self.kg:
                self.kg_frozen = True
                say("Kinguin balance was set from outside: drift stops for it")
            if not self.np_frozen:
                self.np = {c: {"amount": round(self.next_amount(b["amount"], NP_TOP_UP[c], NP_START[c]), 8),
                               "pendingAmount": round(b["amount"] * random.uniform(0, 0.05), 8)}
                           for c, b in self.np.items()}
                self.fake.np_balances = self.np
            if not self.kg_frozen:
                self.kg = round(self.next_amount(self.kg, KG_TOP_UP, KG_START), 2)
                self.fake.kg_balance = self.kg

    @staticmethod
    def next_amount(amount: float, top_up_below: float, start: float) -> float:
        if amount < top_up_below:
            return start
        return amount * random.uniform(0.97, 1.005)


def error_bursts(fake: ProviderFake, stop: threading.Event) -> None:
    rounds = 0
    while not stop.wait(ERROR_EVERY_SECONDS):
        rounds += 1
        path, mode = random.choice((NP_SUFFIX, KG_SUFFIX)), random.choice(("rate_limited", "server_error"))
        say(f"{path} answers {mode} for {ERROR_SECONDS:.0f}s")
        fake.set_mode(mode, path=path)
        if rounds % 4 == 0:
            say(f"/health answers 503 for {ERROR_SECONDS:.0f}s")
            fake.set_route("/health", {"status": "degraded"}, status=503)
        if stop.wait(ERROR_SECONDS):
            return
        fake.set_mode(None, path=path)
        fake.set_route("/health", HEALTH_OK)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("TELLTALE_DEMO_APIS_PORT", "29100")))
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    args = parser.parse_args()
    fake = ProviderFake(np_key=os.environ.get("TELLTALE_DEMO_NP_KEY", "demo-np-key"),
                        kg_key=os.environ.get("TELLTALE_DEMO_KG_KEY", "demo-kg-key"), host=args.host, port=args.port)
    fake.set_route("/health", HEALTH_OK)
    drift = Drift(fake)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake.start()
    threading.Thread(target=error_bursts, args=(fake, stop), daemon=True, name="error-bursts").start()
    say(f"NOWPayments, Kinguin and /health on {fake.url}")
    while not stop.wait(DRIFT_SECONDS):
        drift.step()
    fake.stop()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
