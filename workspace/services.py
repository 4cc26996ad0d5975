"""The researcher side's workflows: typed ``<entity>_<action>`` functions, keyword-only,
atomic. Pages, the researcher API and the commands call these; none repeats a rule."""

import secrets

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from knox.models import AuthToken

from core.errors import Conflict, DomainError, NotFound
from workspace.errors import InvalidCredentials

# ---------------------------------------------------------------------------------------
# Accounts: researchers and their API tokens (one token per researcher)


def researcher_create(
    *, username: str, staff: bool = False, email: str = "", invite: bool = False
) -> tuple[AbstractBaseUser, str | None]:
    """A new active researcher (staff with ``staff``, ``email`` for password resets) with
    a generated password, returned once in clear; with ``invite``, no password at all
    (``None``): the user sets one from ``password_link``.

    ``DomainError`` for a username or e-mail Django refuses, ``Conflict`` for a username
    that exists; nothing is written then."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        username = field.clean(username, None)
    except ValidationError as exc:
        message = f"username {username!r}: {' '.join(exc.messages)}"
        raise DomainError(message, field="username") from exc
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise DomainError(f"e-mail {email!r}: {' '.join(exc.messages)}", field="email") from exc
    password = None if invite else secrets.token_urlsafe(12)
    with transaction.atomic():
        if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
            raise Conflict(f"a user named {username!r} exists already", field="username")
        user = user_model._default_manager.create_user(
            **{user_model.USERNAME_FIELD: username}, email=email, password=password
        )
        if staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    return user, password


def password_link(*, user: AbstractBaseUser, base_url: str) -> str:
    """The address at ``base_url`` where ``user`` sets a new password: Django's reset
    link, which works once (its token hashes the password and the last login) and for
    ``PASSWORD_RESET_TIMEOUT``."""
    path = reverse(
        "workspace:password-reset-confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return base_url.rstrip("/") + path


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


def study_member_set(*, study, username: str, role: str):
    """Give ``username`` (an active researcher) ``role`` on ``study`` (viewer, editor or
    owner), adding them as a member or changing their role. ``NotFound`` for no such
    researcher, ``DomainError`` for an unknown role or the study's own owner (always
    owner); the member row otherwise."""
    from annotation.models import Role, StudyMember

    if role not in Role.values:
        raise DomainError(
            f"unknown role {role!r} (expected one of {', '.join(Role.values)})", field="role"
        )
    user_model = get_user_model()
    user = (
        user_model._default_manager.filter(
            **{user_model.USERNAME_FIELD: username.strip()}, is_active=True
        )
        .only("pk")
        .first()
    )
    if user is None:
        raise NotFound(f"no researcher named {username.strip()!r}", field="username")
    if user.pk == study.owner_id:
        raise DomainError(
            f"{username.strip()} made this study and is always its owner", field="username"
        )
    member, _ = StudyMember.objects.update_or_create(
        study=study, user=user, defaults={"role": role}
    )
    return member


def study_member_remove(*, study, username: str) -> bool:
    """Take ``username`` off the study's members; whether they were one."""
    from annotation.models import StudyMember

    user_model = get_user_model()
    deleted, _ = StudyMember.objects.filter(
        study=study, **{f"user__{user_model.USERNAME_FIELD}": username.strip()}
    ).delete()
    return deleted > 0


def study_remove(*, study, confirm: str):
    """Delete the study (``annotation.services.study_delete``: typed confirmation, not
    while live) with its import and export jobs and their export zips; the image files no
    other study uses go once the deletion is committed."""
    from annotation.services import study_delete
    from scoring.cleanup import study_scores_delete
    from workspace.export_jobs import export_path
    from workspace.models import ExportJob, ImportJob

    busy = ImportJob.objects.filter(
        study=study, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    )
    if busy.exists():
        raise Conflict(
            f"scenes are being added to study {study.slug!r}: delete it once that import "
            "is done or refused"
        )
    with transaction.atomic():  # all or nothing: a refused deletion keeps the scores too
        zips = [export_path(job) for job in ExportJob.objects.filter(study=study)]
        ImportJob.objects.filter(study=study).delete()
        study_scores_delete(study=study)
        deleted = study_delete(study=study, confirm=confirm)
        transaction.on_commit(lambda: [path.unlink(missing_ok=True) for path in zips])
    return deleted


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
    from annotation.services import study_writable

    study_writable(study)
    try:
        current_app.send_task(SCORE_PLAN_TASK, args=(study.pk, selection))
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); scoring was not requested"
        ) from exc
