"""The admin names the product, on the login page and inside."""

from __future__ import annotations

import re

from django.test import Client


def test_admin_index_says_embedportal(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert re.search(r"<title>Operator console \| embedportal</title>", page), page[:500]
    assert re.search(r'<div id="site-name"><a href="/admin/">embedportal</a></div>', page)
    assert "Django administration" not in page and "Django site admin" not in page


def test_admin_login_page_says_embedportal(client: Client) -> None:
    page = client.get("/admin/login/").content.decode()
    assert "<title>Log in | embedportal</title>" in page
    assert "Django administration" not in page


def test_the_host_name_leads_to_the_console_and_view_site_to_the_docs(admin_client: Client, client: Client) -> None:
    assert client.get("/").headers["Location"] == "/admin/"
    login = client.get("/", follow=True)
    assert login.redirect_chain[-1][0].startswith("/admin/login/"), login.redirect_chain
    page = admin_client.get("/admin/").content.decode()
    assert '<a href="/docs/">View site</a>' in page, page[:2000]
