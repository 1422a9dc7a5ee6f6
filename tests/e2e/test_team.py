"""An owner invites a billing member, who accepts and can sign in."""

import re

from playwright.sync_api import expect

from tests.e2e.test_onboarding import _wait_for_mail
from tests.helpers import PASSWORD, make_user


def test_an_owner_invites_a_billing_member_who_accepts_and_signs_in(browser, live_server, screenshot, console_errors):
    make_user(live_server.app, "owner@example.com", name="Olivia Owner")
    owner = console_errors(browser.new_context(locale="en-GB", base_url=live_server.url).new_page())
    owner.goto("/login")
    owner.get_by_label("E-mail address").fill("owner@example.com")
    owner.get_by_label("Password").fill(PASSWORD)
    owner.get_by_role("button", name="Sign in").click()
    owner.get_by_role("link", name="Team", exact=True).click()
    owner.get_by_label("E-mail address").fill("finance@example.com")
    owner.get_by_label("Role", exact=True).select_option("billing")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.locator(".flash-success")).to_contain_text("Invitation sent to finance@example.com")
    screenshot(owner, "team-with-invitation")

    invitee_context = browser.new_context(locale="en-GB", base_url=live_server.url)
    invitee = console_errors(invitee_context.new_page())
    invitee.goto("/dev/mailbox/")
    subject = "[Chotto] Olivia Owner invites you to Olivia Owner"
    assert _wait_for_mail(invitee, subject), "the invitation never arrived"
    invitee.get_by_role("link", name=subject).click()
    link = re.search(r"http://127\.0\.0\.1:\d+/invitations/\S+", invitee.locator("pre.mail-text").inner_text()).group(0)
    invitee.goto(link)
    expect(invitee.locator("main")).to_contain_text("You are invited as Billing")
    screenshot(invitee, "accept-invitation")
    invitee.get_by_label("Your name").fill("Fumiko Finance")
    invitee.get_by_label("Password").fill("ledger lines and green tea")
    invitee.get_by_role("button", name="Join the account").click()
    expect(invitee.locator(".account-bar")).to_contain_text("Billing")

    invitee.get_by_role("button", name="Sign out").click()
    invitee.get_by_label("E-mail address").fill("finance@example.com")
    invitee.get_by_label("Password").fill("ledger lines and green tea")
    invitee.get_by_role("button", name="Sign in").click()
    expect(invitee.get_by_role("heading", level=1)).to_have_text("Welcome, Fumiko Finance")

    owner.reload()
    expect(owner.locator("#members")).to_contain_text("finance@example.com")
    screenshot(owner, "team-members")

    owner.get_by_role("button", name="日本語").click()  # the footer's language switch
    expect(owner.get_by_role("heading", level=1)).to_have_text("チーム")
    screenshot(owner, "team-members-ja")
    owner.get_by_role("link", name="Olivia Owner").first.click()
    expect(owner.locator("#sessions")).to_contain_text("このブラウザ")
    screenshot(owner, "profile-ja")
    invitee_context.close()


def test_on_a_phone_an_owner_removes_a_developer_keeping_one_of_their_credentials(browser, live_server, screenshot,
                                                                                   console_errors):
    from sqlalchemy import select

    from portal.accounts.models import Membership
    from portal.clock import system_now
    from portal.credentials import service as credentials
    from tests.helpers import db_session

    app = live_server.app
    owner_user = make_user(app, "owner@example.com", name="Olivia Owner")
    developer = make_user(app, "dev@example.com", name="Daisuke Developer")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == owner_user.id)).one()
        session.add(Membership(account_id=account_id, user_id=developer.id, role="developer", created_at=system_now()))
        session.commit()
        for name in ("nightly-billing-export-to-the-accounting-system", "old-script"):
            credentials.create(session=session, account_id=account_id, user_id=developer.id, name=name, mode="live",
                               scopes=["sms", "read"], networks=[], monthly_cap=None, now=system_now())

    context = browser.new_context(locale="en-GB", base_url=live_server.url, viewport={"width": 390, "height": 844})
    owner = console_errors(context.new_page())
    owner.goto("/login")
    owner.get_by_label("E-mail address").fill("owner@example.com")
    owner.get_by_label("Password").fill(PASSWORD)
    owner.get_by_role("button", name="Sign in").click()
    owner.goto("/team")
    assert width_below_header(owner) <= 390, "the members table scrolls in its own box"
    owner.get_by_role("button", name="Remove Daisuke Developer").click()
    expect(owner.get_by_role("heading", level=1)).to_have_text("Remove Daisuke Developer")
    expect(owner.get_by_role("checkbox")).to_have_count(2)
    assert width_below_header(owner) <= 390, "the confirmation page scrolls sideways"
    screenshot(owner, "team-remove-member-phone")
    owner.get_by_label(re.compile("Keep .nightly-billing-export")).check()
    owner.get_by_role("button", name="Remove Daisuke Developer").click()
    expect(owner.locator(".flash-success")).to_contain_text("API credentials revoked: 1; kept: 1.")
    expect(owner.locator("#members")).not_to_contain_text("dev@example.com")
    context.close()


# The page's whole width, the site header included: its navigation folds into a menu on a phone.
WIDTH_BELOW_HEADER = "() => document.documentElement.scrollWidth"


def width_below_header(page) -> int:
    """Measured once the stylesheets have loaded (a busy machine can lay a page out before)."""
    page.wait_for_load_state("load")
    return page.evaluate(WIDTH_BELOW_HEADER)
