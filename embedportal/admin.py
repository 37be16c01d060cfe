"""The admin is the operator console; it says so instead of "Django administration".

Django's admin autodiscovery imports this module (embedportal is an installed app).
"""

from __future__ import annotations

from django.contrib import admin

admin.site.site_header = "embedportal"
admin.site.site_title = "embedportal"
admin.site.index_title = "Operator console"
