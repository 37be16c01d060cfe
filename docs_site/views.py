"""The built documentation site under /docs/, for signed-in staff (the admin login)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.static import serve


@staff_member_required
def site(request: HttpRequest, path: str = "") -> HttpResponse:
    root = Path(settings.EMBEDPORTAL_DOCS_SITE_DIR)
    if not (root / "index.html").is_file():
        return HttpResponse(
            "The documentation site is not built yet: run `manage.py docs build`.\n",
            status=503,
            content_type="text/plain",
        )
    if any(part == ".." for part in path.split("/")) or "\\" in path or "\x00" in path:
        raise Http404("no such documentation page")
    if path and not path.endswith("/") and (root / path).is_dir():
        return HttpResponseRedirect(f"{request.path}/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    # serve() also refuses what would leave document_root (safe_join), symlinks resolved.
    return serve(request, path, document_root=str(root))
