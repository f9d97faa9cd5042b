"""Settings, all from the environment: the database from libpq's variables
(the Secret db-credentials), the version from the image (WORKBENCH_VERSION)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = os.environ.get("WORKBENCH_VERSION", "dev")

SECRET_KEY = os.environ.get("SECRET_KEY", "workbench-example-not-a-secret")
DEBUG = os.environ.get("DEBUG") == "1"
ALLOWED_HOSTS = ["*"]  # pods are reached by IP address, not by name

INSTALLED_APPS = ["django.contrib.staticfiles", "workbench"]
MIDDLEWARE = []
ROOT_URLCONF = "workbench.urls"
WSGI_APPLICATION = "workbench.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "workbench"),
        "USER": os.environ.get("PGUSER", ""),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# collectstatic writes /app/static, which berth uploads to the assets bucket;
# file names carry a content hash, so old and new releases' files coexist.
STATIC_URL = os.environ.get("STATIC_URL", "/static/")
STATIC_ROOT = BASE_DIR / "static"
STATICFILES_STORAGE = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"}
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
}
