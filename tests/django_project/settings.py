"""
The Django project of tests/test_django.py: the example's views, the Rehook app and its identify middleware,
sessions and users in an in-memory SQLite database.
"""

SECRET_KEY = "tests only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.django_project.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rehook_sdk.integrations.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "rehook_sdk.integrations.django.middleware.IdentifyMiddleware",
]
# Each test points the client at its own fake (tests/test_django.py); this one is never dialled.
REHOOK = {"api_key": "tests", "api_secret": "tests", "base_url": "http://127.0.0.1:9", "conversion_events": {"signup"}}
