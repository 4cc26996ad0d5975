"""The researcher side's workflows: typed ``<entity>_<action>`` functions, keyword-only,
atomic. Pages, the researcher API and the commands call these; none repeats a rule."""

import secrets

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from knox.models import AuthToken

from core.errors import Conflict, DomainError
from workspace.errors import InvalidCredentials

# ---------------------------------------------------------------------------------------
# Accounts: researchers and their API tokens (one token per researcher)


def researcher_create(*, username: str, staff: bool = False) -> tuple[AbstractBaseUser, str]:
    """A new active researcher (staff with ``staff``) with a generated password, returned
    once in clear (there is no e-mail on these machines: whoever runs this passes it on).

    ``DomainError`` for a username Django refuses, ``Conflict`` for one that exists;
    nothing is written then."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        username = field.clean(username, None)
    except ValidationError as exc:
        message = f"username {username!r}: {' '.join(exc.messages)}"
        raise DomainError(message, field="username") from exc
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
            raise Conflict(f"a user named {username!r} exists already", field="username")
        user = user_model._default_manager.create_user(
            **{user_model.USERNAME_FIELD: username}, password=password
        )
        if staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    return user, password


def token_create(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """A new API token for ``user``, replacing the one they had (which stops working):
    the stored row (its digest, never the key) and the key, to be shown once."""
    with transaction.atomic():
        # The user's row locked: two clicks at once replace the token in turn rather than
        # both creating one (a token per user).
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        AuthToken.objects.filter(user=user).delete()
        return AuthToken.objects.create(user=user, expiry=None)


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete ``user``'s API token; whether there was one."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted > 0


def token_obtain(*, request, username: str, password: str) -> str:
    """A new API token (its key) for the active user ``username`` whose password is
    ``password``, replacing the one they had (``POST auth/token``: only digests are
    stored, so the old key cannot be given back); ``InvalidCredentials`` otherwise.
    ``request`` goes to ``authenticate`` so that django-axes counts the attempt."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise InvalidCredentials("wrong username or password")
    _, key = token_create(user=user)
    return key


# ---------------------------------------------------------------------------------------
# Running a study from its dashboard: status, settings, scoring


# The name of scoring.tasks.study_score_plan: the web process publishes it by name, since
# importing scoring's worker side would import the metric registry (pyiqa, PyTorch).
SCORE_PLAN_TASK = "scoring.study_score_plan"


def study_status_change(*, study, status: str):
    """Draft, live or closed, through ``study_configure`` (the one validator): live opens
    the study to annotators; closed takes no new annotators and keeps the answers to open
    trials; draft shows annotators that the study is not open yet."""
    from annotation.services.studies import study_configure

    return study_configure(study=study, status=status)


def study_settings_change(*, study, changes: dict):
    """The settings ``configure_study`` changes, through ``study_configure``: refused with
    ``InvalidSetting`` naming the setting, nothing written then."""
    from annotation.services.studies import study_configure

    return study_configure(study=study, **changes)


def study_score_request(*, study, selection: str = "available") -> None:
    """Ask a worker to do what ``score_study SLUG --metrics SELECTION`` does
    (without ``--wait``): plan the study's scoring and send the batches. Raises
    ``BrokerUnavailable`` if the broker does not answer; nothing runs inline."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    from annotation.errors import BrokerUnavailable

    try:
        current_app.send_task(SCORE_PLAN_TASK, args=(study.pk, selection))
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); scoring was not requested"
        ) from exc
