"""The chat page in a real browser: Debian's chromium, driven by selenium through
chromium-driver, talking with an ``nc`` user of the same server.

Set ``TRIOSOCK_SCREENSHOT=PATH`` to keep a screenshot of the page at the end (the
README's picture is made that way).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from triosock.chat import ChatServer

from .chattools import web_chat
from .clitools import cli_server, line_process, need
from .conftest import GUARD
from .tlstools import make_certs, spki_hash

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

T = TypeVar("T")
XSS = "<img src=x onerror=alert(1)>"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (.ci/run installs it)")


@contextmanager
def browser(*more: str) -> Iterator[WebDriver]:
    """Headless chromium; ``more``: further command-line switches."""
    options = Options()
    options.binary_location = _chromium()
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,640",
        "--no-first-run",
        "--disable-extensions",
        *more,
    ):
        options.add_argument(argument)
    # An explicit driver: selenium must not try to download one.
    driver = webdriver.Chrome(
        service=Service(executable_path=need("chromedriver")), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Selenium blocks: run it in a thread, so that trio (and the guard) goes on."""
    return await trio.to_thread.run_sync(function, *args, abandon_on_cancel=True)


def wait_for(driver: WebDriver, check: Callable[[WebDriver], Any], seconds: float = 10) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(check)


def log_lines(driver: WebDriver) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")]


def shows(text: str) -> Callable[[WebDriver], bool]:
    return lambda driver: any(text in line for line in log_lines(driver))


def me(driver: WebDriver) -> str:
    """The nick the page shows as the user's."""
    return str(driver.find_element(By.ID, "me").text)


def room_list(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "rooms").text)


def header(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "header").text)


def click_room(driver: WebDriver, room: str) -> None:
    """Focus the room's button from the keyboard and press Enter on it."""
    for button in driver.find_elements(By.CSS_SELECTOR, "#rooms button"):
        if button.text.startswith(room + " "):
            button.send_keys(Keys.ENTER)
            return
    raise AssertionError(f"no button for {room}")


def type_line(driver: WebDriver, text: str) -> None:
    field = driver.find_element(By.ID, "say")
    field.send_keys(text, Keys.ENTER)


def set_nick(driver: WebDriver, nick: str) -> None:
    field = driver.find_element(By.ID, "nick")
    field.click()  # focused first: the page leaves a field being edited alone
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(nick, Keys.ENTER)


async def test_a_browser_and_an_nc_user_talk_and_markup_stays_text() -> None:
    nc = need("nc")
    with trio.fail_after(GUARD * 3):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "127.0.0.1:0"],
            ready_lines=2,
        ) as server:
            tcp, web = server.port("chat (tcp)"), server.port("chat (web)")
            async with line_process([nc, "127.0.0.1", str(tcp)]) as alice:
                await alice.expect(b"welcome")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                with browser() as driver:
                    await in_thread(driver.get, f"http://127.0.0.1:{web}/")
                    await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                    await alice.expect(b"joined #lobby")
                    await in_thread(set_nick, driver, "webby")
                    await alice.expect(b"is now known as webby")
                    await in_thread(wait_for, driver, lambda d: me(d) == "webby")
                    # The room list: both users in #lobby.
                    await in_thread(
                        wait_for,
                        driver,
                        lambda d: "#lobby 2" in room_list(d),
                    )
                    await in_thread(type_line, driver, "hello from chromium")
                    assert await alice.expect(b"chromium") == b"[#lobby] webby: hello from chromium"
                    await alice.send(b"hi webby")
                    await in_thread(wait_for, driver, shows("alice: hi webby"))
                    await alice.send(b"/msg webby a secret")
                    await in_thread(wait_for, driver, shows("[dm from alice] a secret"))
                    await in_thread(type_line, driver, "/msg alice psst back")
                    assert await alice.expect(b"psst back") == b"[dm from webby] psst back"
                    await in_thread(type_line, driver, "/me waves")
                    await alice.expect(b"* webby waves")
                    # Markup from one user is text in another's page, and runs nothing.
                    await alice.send(XSS.encode())
                    await in_thread(wait_for, driver, shows("alice: " + XSS))
                    await in_thread(type_line, driver, XSS)
                    await alice.expect(b"webby: " + XSS.encode())
                    await in_thread(wait_for, driver, shows("webby: " + XSS))
                    assert driver.find_elements(By.CSS_SELECTOR, "#log img") == []
                    with pytest.raises(NoAlertPresentException):
                        _ = driver.switch_to.alert.text
                    await alice.send(b"that was only text")
                    await in_thread(wait_for, driver, shows("alice: that was only text"))
                    # The room list: a button per room, reachable from the keyboard.
                    await alice.send(b"/join #games")
                    await alice.expect(b"* alice joined #games")
                    await in_thread(wait_for, driver, lambda d: "#games 1" in room_list(d))
                    await in_thread(click_room, driver, "#games")
                    await alice.expect(b"* webby joined #games")
                    await in_thread(wait_for, driver, lambda d: "in #games" in header(d))
                    await alice.send(b"welcome to the games")
                    await in_thread(wait_for, driver, shows("[#games] alice: welcome to the"))
                    if path := os.environ.get("TRIOSOCK_SCREENSHOT"):
                        await in_thread(driver.save_screenshot, path)
                    # /quit from the page: the room hears it; the page says why it closed.
                    await in_thread(type_line, driver, "/quit")
                    await alice.expect(b"* webby left #games")
                    await in_thread(wait_for, driver, shows("disconnected (1000: bye)"))
                    say = driver.find_element(By.ID, "say")
                    assert not say.is_enabled()  # nothing typed is silently lost


def status(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "status").text)


def count(driver: WebDriver, text: str) -> int:
    return sum(text in line for line in log_lines(driver))


async def test_the_page_reconnects_and_resumes_by_itself_and_after_a_reload(
    tmp_path: Any,
) -> None:
    """The page's connection is cut from the server side: the page reconnects by
    itself, resumes, and shows once each line an nc user said meanwhile; reloaded, it
    shows the conversation again (history) under the same nick; the room saw nothing."""
    nc = need("nc")
    chat = ChatServer()
    with trio.fail_after(GUARD * 2):
        async with (
            web_chat(chat) as (tcp, _, web),
            line_process([nc, "127.0.0.1", str(tcp)]) as alice,
        ):
            await alice.send(b"/nick alice")
            await alice.expect(b"is now known as alice")
            with browser() as driver:
                await in_thread(driver.get, f"http://127.0.0.1:{web}/")
                await in_thread(wait_for, driver, shows("welcome to triosock chat"))
                nick = await in_thread(me, driver)
                await alice.expect(nick.encode() + b" joined #lobby")
                mark = len(alice.seen)
                await alice.send(b"before the cut")
                await in_thread(wait_for, driver, shows("alice: before the cut"))
                # Cut the page's TCP connection from the server's side.
                (page,) = [u for u in chat._sessions.users.values() if u.member.kind == "ws"]
                page.member.peer.connection.stream._raw.socket.shutdown(  # type: ignore[attr-defined]
                    socket.SHUT_RDWR
                )
                while True:  # its session waits, detached
                    await alice.send(b"/who")
                    if b"(away)" in await alice.expect(b"-!- in #lobby"):
                        break
                await alice.send(b"while away 1")
                await alice.send(b"while away 2")
                await in_thread(wait_for, driver, shows("alice: while away 2"))
                await in_thread(wait_for, driver, lambda d: status(d) == "connected")
                assert await in_thread(me, driver) == nick
                await alice.send(b"live again")
                await in_thread(wait_for, driver, shows("alice: live again"))
                for said in ("before the cut", "while away 1", "while away 2", "live again"):
                    assert await in_thread(count, driver, "alice: " + said) == 1, said
                # A reload: a new page, the same tab's session, and the conversation.
                await in_thread(driver.refresh)
                await in_thread(wait_for, driver, shows("alice: live again"))
                await in_thread(wait_for, driver, lambda d: me(d) == nick)
                await alice.send(b"after the reload")
                await in_thread(wait_for, driver, shows("alice: after the reload"))
                said_all = ("before the cut", "while away 1", "while away 2", "live again")
                for said in (*said_all, "after the reload"):
                    assert await in_thread(count, driver, "alice: " + said) == 1, said
                shot = tmp_path / "page-resumed.png"
                await in_thread(driver.save_screenshot, str(shot))
                assert shot.stat().st_size > 10_000
                await in_thread(type_line, driver, "/quit")
                await alice.expect(nick.encode() + b" left #lobby")
            room_saw = [x for x in alice.seen[mark:] if x.startswith(b"* " + nick.encode())]
            assert room_saw == [b"* " + nick.encode() + b" left #lobby"]  # at /quit only


async def test_the_page_over_https_and_wss_with_the_test_ca_trusted(tmp_path: Path) -> None:
    """``chat serve --tls-cert``: chromium, told to trust the test CA, opens the page
    over https://, the page its WebSocket over wss://, and it talks with an nc user on
    the plaintext port beside."""
    nc = need("nc")
    certs = make_certs(tmp_path)
    # chromium trusts the CA by its key (--ignore-certificate-errors-spki-list), which it
    # looks for in the chain the server sends: the CA's certificate follows the server's.
    chain = tmp_path / "chain.pem"
    chain.write_bytes(certs.cert.read_bytes() + certs.ca_file.read_bytes())
    args = ["chat", "serve", "--tcp", "none", "--plain-tcp", "127.0.0.1:0", "--udp", "none"]
    args += ["--web", "127.0.0.1:0", "--tls-cert", str(chain), "--tls-key", str(certs.key)]
    with trio.fail_after(GUARD * 3):
        async with cli_server([*args, "--status", "none"], ready_lines=2) as server:
            plain, web = server.port("(plaintext)"), server.port("chat (web)")
            assert f"open https://127.0.0.1:{web}/" in server.lines[1]
            async with line_process([nc, "127.0.0.1", str(plain)]) as alice:
                await alice.expect(b"welcome")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                trust = f"--ignore-certificate-errors-spki-list={spki_hash(certs.ca_file)}"
                with browser(trust) as driver:
                    await in_thread(driver.get, f"https://127.0.0.1:{web}/")
                    await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                    assert driver.execute_script("return location.protocol") == "https:"
                    await alice.expect(b"joined #lobby")
                    # Its WebSocket is wss:// (the port speaks nothing else, and an https
                    # page may not open a ws:// one).
                    await in_thread(set_nick, driver, "secure")
                    await alice.expect(b"is now known as secure")
                    await in_thread(type_line, driver, "hello over wss")
                    assert await alice.expect(b"secure:") == b"[#lobby] secure: hello over wss"
                    await alice.send(b"hi secure")
                    await in_thread(wait_for, driver, shows("alice: hi secure"))
                    await in_thread(type_line, driver, "/quit")
                    await alice.expect(b"* secure left #lobby")
