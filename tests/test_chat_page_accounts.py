"""The chat page's accounts and operators in a real browser: Debian's chromium, driven by
selenium through chromium-driver (set up as in :mod:`tests.test_chat_browser`), with
``nc`` and plain TCP users of the same server.

* A message kept while its registered recipient was away reaches her page when she logs
  in through its form, with the time it was sent (and its day, when not today).
* An operator's actions show in the page as a TCP user sees them; the room's topic shows
  in the page's header.
* The page registers its nick, shows the server's refusals beside the form, logs out,
  logs in again and stays logged in across a reload; the password is never shown.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import pytest
import trio

from triosock._accounts import Hasher
from triosock._sansio import accounts as rules
from triosock._sansio import chat as proto
from triosock.chat import ChatServer

from .chattools import LineSocket, web_chat
from .clitools import line_process, need
from .conftest import GUARD

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

T = TypeVar("T")
#: Cheap scrypt for the tests (as in test_accounts).
FAST = rules.ScryptParameters(log2_n=4, r=1, p=1)
PASSWORD = "correct horse battery"


# -- the browser (as test_chat_browser sets it up) -----------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (.ci/run installs it)")


@contextmanager
def browser() -> Iterator[WebDriver]:
    """Headless chromium."""
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


# -- what the page shows, and what a user does in it -----------------------------------------


def log_lines(driver: WebDriver) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")]


def shows(text: str) -> Callable[[WebDriver], bool]:
    return lambda driver: any(text in line for line in log_lines(driver))


def line_with(driver: WebDriver, text: str) -> WebElement:
    (found,) = [li for li in driver.find_elements(By.CSS_SELECTOR, "#log li") if text in li.text]
    return found


def text_of(driver: WebDriver, element_id: str) -> str:
    """The text of an element as shown ("" while it is hidden)."""
    return str(driver.find_element(By.ID, element_id).text)


def me(driver: WebDriver) -> str:
    return text_of(driver, "me")


def answered(text: str) -> Callable[[WebDriver], bool]:
    """The server's answer to the account form, shown beside it."""
    return lambda driver: text_of(driver, "account-answer") == text


def use_account_form(driver: WebDriver, nick: str, password: str, button: str) -> None:
    """Fill the account form and press ``button`` ("login" or "register")."""
    field = driver.find_element(By.ID, "login-nick")
    field.clear()
    field.send_keys(nick)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, button).click()


def type_line(driver: WebDriver, text: str) -> None:
    driver.find_element(By.ID, "say").send_keys(text, Keys.ENTER)


def set_nick(driver: WebDriver, nick: str) -> None:
    field = driver.find_element(By.ID, "nick")
    field.click()  # focused first: the page leaves a field being edited alone
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(nick, Keys.ENTER)


def password_left(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "login-password").get_property("value"))


def hhmm(seconds: float, *, with_day: bool = False) -> str:
    """How the page shows a time (local, as chromium's and ours are the machine's)."""
    return time.strftime("%Y-%m-%d %H:%M" if with_day else "%H:%M", time.localtime(seconds))


async def tcp_user(port: int, nick: bytes) -> LineSocket:
    """A TCP user in the lobby, named ``nick``."""
    user = await LineSocket.connect(port)
    await user.read_until(b"welcome to triosock chat")
    await user.send(b"/nick " + nick + b"\n")
    await user.read_until(b"is now known as " + nick)
    return user


# -- the tests -----------------------------------------------------------------------------


async def test_a_message_kept_while_alice_was_away_reaches_her_page_login_with_its_time() -> None:
    """nc: alice registers; she disconnects; a guest's ``/nick alice`` is refused; bob's
    ``/msg alice`` while she is away is kept and delivered when she logs in from the page,
    with its time (and, for one kept for days, its day)."""
    nc = need("nc")
    chat = ChatServer(hasher=Hasher(parameters=FAST))
    with trio.fail_after(GUARD * 2):
        async with web_chat(chat) as (tcp, _, web):
            async with line_process([nc, "127.0.0.1", str(tcp)]) as alice:
                await alice.expect(b"welcome to triosock chat")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                await alice.send(b"/register " + PASSWORD.encode())
                assert await alice.expect(b"is yours") == (
                    b"-!- alice is yours: log in with /login alice PASSWORD from now on"
                )
                await alice.send(b"/quit")
                await alice.close_stdin()
                assert (await alice.read_to_eof())[-1] == b"-!- bye"
            async with line_process([nc, "127.0.0.1", str(tcp)]) as guest:
                await guest.expect(b"welcome to triosock chat")
                await guest.send(b"/nick alice")
                assert await guest.expect(b"alice is registered") == (
                    b"-!- alice is registered: /login alice PASSWORD if it is yours"
                )
                # One kept three days ago (put in the store as the server keeps them).
                days_ago = time.time() - 3 * 86400
                old = proto.Direct("bob", "alice", "from days ago", time=int(days_ago * 1000))
                assert await chat.accounts.keep_offline("alice", proto.encode_event(old), 100)
                bob = await tcp_user(tcp, b"bob")
                not_before = time.time()
                await bob.send(b"/msg alice are you there? <b>it is me</b>\n")
                assert await bob.read_until(b"kept") == (
                    b"-!- alice is away: your message is kept for their next login"
                )
                not_after = time.time()
                with browser() as driver:
                    await in_thread(driver.get, f"http://127.0.0.1:{web}/")
                    await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                    await in_thread(use_account_form, driver, "alice", PASSWORD, "login")
                    await in_thread(wait_for, driver, shows("[dm from bob] are you there?"))
                    await bob.read_until(b"is now known as alice")
                    await guest.expect(b"is now known as alice")
                    lines = await in_thread(log_lines, driver)
                    start = lines.index(
                        next(line for line in lines if "messages kept while you were" in line)
                    )
                    kept = lines[start : start + 4]
                    assert kept[0].endswith(" -!- messages kept while you were away: 2 messages")
                    assert kept[1] == f"{hhmm(days_ago, with_day=True)} [dm from bob] from days ago"
                    said = "[dm from bob] are you there? <b>it is me</b>"
                    shown = {f"{hhmm(t)} {said}" for t in (not_before, not_after)}
                    assert kept[2] in shown, (kept[2], shown)
                    assert kept[3].endswith(" -!- end of messages kept while you were away")
                    # the exact time, behind the shown one
                    stamp = await in_thread(
                        lambda: line_with(driver, "are you there").find_element(By.TAG_NAME, "time")
                    )
                    when = datetime.fromisoformat(str(stamp.get_attribute("datetime")))
                    assert not_before - 1 <= when.timestamp() <= not_after + 1
                    assert driver.find_elements(By.CSS_SELECTOR, "#log b") == []
                    # logged in: the page says so and offers to log out; nothing shows the
                    # password, and its field is empty
                    assert me(driver) == "alice"
                    assert text_of(driver, "account-nick") == "alice"
                    assert text_of(driver, "account-answer") == "you are logged in as alice"
                    assert not driver.find_element(By.ID, "login-form").is_displayed()
                    assert driver.find_element(By.ID, "logout").is_displayed()
                    assert password_left(driver) == ""
                    assert not any(PASSWORD in line for line in await in_thread(log_lines, driver))
                    # the messages were given once: bob's next one is live, to her page
                    await bob.send(b"/msg alice welcome back\n")
                    await in_thread(wait_for, driver, shows("[dm from bob] welcome back"))
                    assert (await in_thread(log_lines, driver)).count(kept[1]) == 1
                bob.close()


async def test_an_operators_actions_show_as_a_tcp_user_sees_them_and_the_topic_in_the_header() -> (
    None
):
    """A TCP founder claims a room, sets and clears its topic, moderates it and kicks a
    user: each action is a line in the page, word for word the TCP user's; the header
    shows the topic (told on entering the room, and as it changes), as text."""
    chat = ChatServer(hasher=Hasher(parameters=FAST))
    topic = "dens are <i>cosy</i>"
    with trio.fail_after(GUARD * 2):
        async with web_chat(chat) as (tcp, _, web):
            carol = await tcp_user(tcp, b"carol")
            await carol.send(b"/register " + PASSWORD.encode() + b"\n/join #den\n")
            await carol.read_until(b"is yours")
            await carol.read_until(b"* carol joined #den")
            dave = await tcp_user(tcp, b"dave")
            await dave.send(b"/join #den\n")
            await carol.read_until(b"* dave joined #den")
            with browser() as driver:
                await in_thread(driver.get, f"http://127.0.0.1:{web}/")
                await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                nick = await in_thread(me, driver)
                await in_thread(type_line, driver, "/join #den")
                await carol.read_until(nick.encode() + b" joined #den")
                assert text_of(driver, "topic") == ""
                mark = len(carol.lines)
                await carol.send(b"/claim\n/topic " + topic.encode() + b"\n")
                await in_thread(
                    wait_for, driver, lambda d: text_of(d, "topic") == f"topic: {topic}"
                )
                header = driver.find_element(By.ID, "topic")
                assert header.get_attribute("title") == "set by carol"
                assert header.find_elements(By.TAG_NAME, "i") == []
                # away and back: the topic is the room's, told again on entering it
                await in_thread(type_line, driver, "/join #lobby")
                await in_thread(wait_for, driver, lambda d: text_of(d, "room") == "#lobby")
                assert text_of(driver, "topic") == ""
                await in_thread(type_line, driver, "/join #den")
                await in_thread(
                    wait_for, driver, lambda d: text_of(d, "topic") == f"topic: {topic}"
                )
                await carol.send(b"/mode +m\n/kick dave flooding\n/mode -m\n/topic -\n")
                await carol.read_until(b"cleared the topic")
                await in_thread(wait_for, driver, shows("cleared the topic of #den"))
                assert text_of(driver, "topic") == ""
                assert not driver.find_element(By.ID, "topic").is_displayed()
                # every action as the TCP user saw it (after the page's own HH:MM)
                tcp_saw = [
                    line.decode() for line in carol.lines[mark:] if line.startswith(b"* carol ")
                ]
                assert tcp_saw == [
                    "* carol claimed #den: its founder",
                    f"* carol set the topic of #den: {topic}",
                    "* carol set #den +m (only operators speak)",
                    "* carol kicked dave (flooding)",
                    "* carol set #den -m (everyone speaks)",
                    "* carol cleared the topic of #den",
                ]
                page_saw = [
                    li.text.partition(" ")[2]
                    for li in driver.find_elements(By.CSS_SELECTOR, "#log li.moderation")
                ]
                assert page_saw == tcp_saw
                assert driver.find_elements(By.CSS_SELECTOR, "#log i") == []
            for user in (carol, dave):
                user.close()


async def test_the_page_registers_its_nick_shows_refusals_logs_out_and_in_again() -> None:
    """Register from the form (the nick, then the register event), a refusal shown beside
    the form (the nick is someone else's: nothing is registered), log out, a wrong
    password, log in; a reload keeps the session and its login."""
    chat = ChatServer(hasher=Hasher(parameters=FAST))
    with trio.fail_after(GUARD * 2):
        async with web_chat(chat) as (tcp, _, web):
            watcher = await tcp_user(tcp, b"watcher")
            with browser() as driver:
                await in_thread(driver.get, f"http://127.0.0.1:{web}/")
                await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                await watcher.read_until(me(driver).encode() + b" joined #lobby")
                await in_thread(set_nick, driver, "pagey")
                await watcher.read_until(b"is now known as pagey")
                # a nick held by another: refused, and no register event is sent (it
                # would register the nick the page holds, pagey)
                await in_thread(use_account_form, driver, "watcher", PASSWORD, "register")
                await in_thread(wait_for, driver, answered("nick watcher is taken"))
                assert password_left(driver) == ""
                await in_thread(type_line, driver, "/who")  # the server has read what came
                await in_thread(wait_for, driver, shows("-!- in #lobby: "))
                assert await chat.accounts.get("watcher") is None
                assert await chat.accounts.get("pagey") is None
                # its own nick: taken, then registered
                await in_thread(use_account_form, driver, "webby", PASSWORD, "register")
                await in_thread(
                    wait_for,
                    driver,
                    answered("webby is yours: log in with /login webby PASSWORD from now on"),
                )
                assert await watcher.read_until(b"is now known as webby") == (
                    b"* pagey is now known as webby"
                )
                assert await chat.accounts.get("webby") is not None
                assert text_of(driver, "account-nick") == "webby"
                # log out: a guest again, the form back
                await in_thread(driver.find_element(By.ID, "logout").click)
                await in_thread(wait_for, driver, lambda d: me(d).startswith("guest"))
                await watcher.read_until(b"* webby is now known as guest")
                assert driver.find_element(By.ID, "login-form").is_displayed()
                assert text_of(driver, "account-answer") == f"logged out: you are {me(driver)}"
                # a wrong password: the server's answer; then the right one
                await in_thread(use_account_form, driver, "webby", "not the password", "login")
                await in_thread(
                    wait_for, driver, answered("login failed: wrong nick or password for webby")
                )
                assert driver.find_element(By.ID, "login-form").is_displayed()
                await in_thread(use_account_form, driver, "webby", PASSWORD, "login")
                await in_thread(wait_for, driver, answered("you are logged in as webby"))
                await watcher.read_until(b"is now known as webby")
                # a reload resumes the session, and the page knows it is logged in
                await in_thread(driver.refresh)
                await in_thread(wait_for, driver, shows("welcome back, webby"))
                await in_thread(wait_for, driver, lambda d: text_of(d, "account-nick") == "webby")
                assert not driver.find_element(By.ID, "login-form").is_displayed()
                lines = await in_thread(log_lines, driver)
                assert not any(PASSWORD in line or "not the password" in line for line in lines)
                assert PASSWORD not in driver.page_source
            watcher.close()
