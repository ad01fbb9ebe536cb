"""The example app's URLs, and a page for logged-in users."""

from __future__ import annotations

import sys
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.urls import path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import django_app


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home")


urlpatterns = [*django_app.urlpatterns, path("", home)]
