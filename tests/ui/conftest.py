"""Fixtures of the UI browser tests: a real Airflow with two users, and headless Chromium.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (``make test-ui`` / ``make test``
install them when missing). Screenshots go to ``$ION_UI_ARTIFACTS`` (default ``.artifacts/ui`` in the
repository); the path is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from tests.e2e.ion_events_helpers import RECEIVER, SECRET, WATCH_DAG, env_for

PASSWORDS = {"admin": "admin-Pw-0123456789", "viewer": "viewer-Pw-0123456789"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


class UsersStack(AirflowStack):
    """AirflowStack with SimpleAuthManager users ``admin`` (role admin) and ``viewer`` (role viewer)."""

    def __init__(self, home: Path, **kwargs: Any) -> None:
        super().__init__(home, **kwargs)
        # SimpleAuthManager reads the passwords of its users from this file and adds missing ones
        # (api_fastapi/auth/managers/simple/simple_auth_manager.py, init()).
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(PASSWORDS))
        self.env.update(
            {
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            }
        )
        self._tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self._tokens:
            response = httpx.post(
                f"{self.base_url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=10
            )
            response.raise_for_status()
            self._tokens[user] = response.json()["access_token"]
        return self._tokens[user]

    def auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token('admin')}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator_server: Any) -> Iterator[UsersStack]:
    home = tmp_path_factory.mktemp("airflow-ui")
    dags = home / "dags"
    dags.mkdir()
    (dags / "ion_on_run.py").write_text(WATCH_DAG)
    inbox_url = f"sqlite:///{home}/ion_inbox.db"
    stack = UsersStack(home, dags_folder=dags)
    conn = {
        "conn_type": "ion",
        "login": emulator_server.client_id,
        "password": emulator_server.client_secret,
        "host": emulator_server.base_url,
        "extra": {"token_url": emulator_server.token_url},
    }
    stack.env.update(
        {
            **env_for(inbox_url),
            "AIRFLOW_CONN_ION_DEFAULT": json.dumps(conn),
            "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "ion_default",
            "AIRFLOW__ION_WEBHOOKS__UI_UNCONSUMED_AFTER": "5",
        }
    )
    emulator_server.reset()
    receiver = emulator_server.store.create_receiver(
        {"name": RECEIVER, "webhookUri": f"{stack.base_url}/ion-webhooks/v1/receivers/{RECEIVER}",
         "sharedSecret": SECRET}
    )  # fmt: skip
    emulator_server.store.create_subscription({"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"})
    with stack:
        stack.inbox_url = inbox_url  # type: ignore[attr-defined]
        yield stack


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(os.environ.get("ION_UI_ARTIFACTS") or Path(__file__).resolve().parents[2] / ".artifacts" / "ui")
    root.mkdir(parents=True, exist_ok=True)
    print(f"\nUI test screenshots: {root}")
    return root


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("chromium and chromium-driver are not installed: run `make test-ui` (installs them as root)")
    return browser, driver


class Browser:
    """A headless Chromium session with helpers for Airflow's login and our page."""

    def __init__(self, base_url: str, profile: Path, artifacts: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        browser, driver = _chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        # chromedriver (and the Chromium it starts) in its own process group, ended by that group's id.
        self.service = Service(executable_path=driver, popen_kw={"start_new_session": True})
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_page_load_timeout(60)
        self.base_url = base_url
        self.artifacts = artifacts

    def login(self, user: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.base_url}/ion-ui/")  # no session: Airflow's login page
        self.wait(lambda d: d.find_elements(By.NAME, "username"), what="the login form")
        self.driver.find_element(By.NAME, "username").send_keys(user)
        self.driver.find_element(By.NAME, "password").send_keys(PASSWORDS[user])
        self.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.wait(lambda d: d.get_cookie("_token"), what="the session cookie")

    def open(self, path: str = "/ion-ui/") -> None:
        self.driver.get(f"{self.base_url}{path}")

    def wait(self, condition: Any, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition(self.driver)
            if result:
                return result
            if time.monotonic() > deadline:
                self.shot(f"timeout-{what.replace(' ', '-')}")
                raise TimeoutError(f"waited {timeout}s for {what}; page: {self.driver.current_url}")
            time.sleep(0.3)

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return "\n".join(e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css))

    def scroll_to(self, element_id: str) -> None:
        self.driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", element_id)

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        process = self.service.process
        try:
            self.driver.quit()
        finally:
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def browser_factory(tmp_path: Path, stack: UsersStack, artifacts: Path) -> Iterator[Any]:
    opened: list[Browser] = []

    def make() -> Browser:
        b = Browser(stack.base_url, tmp_path / f"profile-{len(opened)}", artifacts)
        opened.append(b)
        return b

    yield make
    for b in opened:
        b.quit()
