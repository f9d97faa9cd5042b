# berth's Django adapter (src/schema/django.rs). berth runs it in the
# migration image as `manage.py shell -c <this script>`, the request as JSON
# in BERTH_SCHEMA_REQUEST:
#
#   {"action": "inspect"}
#   {"action": "plan", "target": {"app": "0004_x", ...}}
#   {"action": "migrate", "target": {...}, "expected": [{"app", "name"}, ...],
#    "accept_data_loss": false}
#
# and reads the last line it prints: `berth-schema-result: {JSON}` with
# `applied` (per app the last migration applied, from django_migrations
# through Django's loader), `pending` (inspect: what a full migrate would
# apply), `plan` (the steps from the live state to the target), `plan_text`
# (Django's own `migrate APP TARGET --plan`), `unknown` (applied migrations
# this image has no file for) and `error`. Exit 0: done; 1: a migrate stopped
# midway (the state is where it stopped); 2: a bad request, nothing done.
# An app absent from the target goes to `zero`. Only Django's public
# management API and its migration loader, executor and recorder are used.
import io
import json
import os
import sys
import traceback

from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections, migrations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

RESULT_PREFIX = "berth-schema-result: "


class BadRequest(Exception):
    """The request cannot be carried out as asked; nothing was done."""


def berth_executor():
    """A fresh executor: its loader reads the files and django_migrations now."""
    return MigrationExecutor(connections[DEFAULT_DB_ALIAS])


def berth_applied_rows():
    """The rows of django_migrations, {(app, name): id}; empty before any migrate."""
    recorder = MigrationRecorder(connections[DEFAULT_DB_ALIAS])
    if not recorder.has_table():
        return {}
    return {key: row.id for key, row in recorder.applied_migrations().items()}


def berth_state(executor):
    """Per app the last migration applied, and the applied ones without a file.

    "Last" follows the migration graph (an applied migration none of whose
    applied children is of its app); for migrations the image has no file
    for, and for ties, the newest row of django_migrations.
    """
    loader = executor.loader
    graph = loader.graph
    rows = berth_applied_rows()
    # The loader's applied set holds every row, files or not, and a squashed
    # migration in place of the rows it replaces (gone from the graph).
    replaced = {key for migration in loader.replacements.values() for key in migration.replaces}
    applied = {key for key in loader.applied_migrations if key not in replaced or key in graph.nodes}
    unknown = sorted(key for key in applied if key not in graph.nodes)
    by_app = {}
    for key in applied:
        by_app.setdefault(key[0], []).append(key)
    state = {}
    for app, keys in by_app.items():
        def is_last(key):
            if key not in graph.node_map:
                return True
            return not any(child in applied and child[0] == app for child in graph.node_map[key].children)

        last = [key for key in keys if is_last(key)]
        last.sort(key=lambda key: rows.get(key, -1))
        state[app] = last[-1][1]
    return state, unknown


def berth_describe(operation, backwards):
    """(description, irreversible) of one operation as `migrate --plan` shows it."""
    description, is_error = MigrateCommand.describe_operation(operation, backwards)
    return {
        "description": description,
        "irreversible": bool(is_error) or not getattr(operation, "reversible", True),
    }


def berth_step(migration, backwards):
    """One migration of a plan, its operations in the order they run."""
    operations = list(reversed(migration.operations)) if backwards else migration.operations
    return {
        "migration": {"app": migration.app_label, "name": migration.name},
        "backwards": bool(backwards),
        "operations": [berth_describe(op, backwards) for op in operations],
    }


def berth_targets(executor, live, target):
    """Django's targets, (app, name or None for zero), for the apps that differ."""
    graph = executor.loader.graph
    migrated = set(executor.loader.migrated_apps)
    for app, name in target.items():
        if app not in migrated:
            raise BadRequest(f"this image has no migrations for app {app!r}, which the target names")
        if (app, name) not in graph.nodes:
            raise BadRequest(f"this image has no migration {app}.{name}, which the target names")
    apps = sorted(app for app in migrated if live.get(app) != target.get(app))
    return [(app, target.get(app)) for app in apps]


def berth_plan_text(targets):
    """Django's own `migrate APP TARGET --plan`, for each app that changes."""
    text = io.StringIO()
    for app, name in targets:
        text.write(f"$ manage.py migrate {app} {name or 'zero'} --plan\n")
        call_command("migrate", app, name or "zero", plan=True, stdout=text, no_color=True)
    return text.getvalue()


def berth_accept_loss(plan):
    """Let irreversible RunPython and RunSQL operations be unapplied as no-ops."""
    def relax(operation):
        if isinstance(operation, migrations.RunPython) and operation.reverse_code is None:
            operation.reverse_code = migrations.RunPython.noop
        elif isinstance(operation, migrations.RunSQL) and operation.reverse_sql is None:
            operation.reverse_sql = migrations.RunSQL.noop
        elif isinstance(operation, migrations.SeparateDatabaseAndState):
            for inner in operation.database_operations:
                relax(inner)
        if not getattr(operation, "reversible", True):
            raise BadRequest(
                f"{operation.describe()} cannot be unapplied even with data loss accepted: "
                "it is not a RunPython or RunSQL"
            )

    for migration, backwards in plan:
        if backwards:
            for operation in migration.operations:
                relax(operation)


def berth_run(request, response):
    """Carry out `request`, filling in `response`; the exit code."""
    executor = berth_executor()
    live, unknown = berth_state(executor)
    response["applied"] = live
    response["unknown"] = [{"app": a, "name": n} for a, n in unknown]
    action = request.get("action")
    if action == "inspect":
        leaves = executor.loader.graph.leaf_nodes()
        response["pending"] = [berth_step(m, b) for m, b in executor.migration_plan(leaves)]
        return 0
    if action not in ("plan", "migrate"):
        raise BadRequest(f"unknown action {action!r}")
    target = request.get("target") or {}
    targets = berth_targets(executor, live, target)
    changing = {app for app, _ in targets}
    strangers = [f"{a}.{n}" for a, n in unknown if a in changing]
    if strangers:
        raise BadRequest(
            "the database has " + ", ".join(strangers) + " applied, which this image has no "
            "file for, so it cannot unapply them (were they migrated by a newer image than "
            "berth recorded?)"
        )
    plan = executor.migration_plan(targets) if targets else []
    response["plan"] = [berth_step(m, b) for m, b in plan]
    response["plan_text"] = berth_plan_text(targets)
    if action == "plan":
        return 0
    expected = [(m["app"], m["name"]) for m in request.get("expected", [])]
    planned = [(m.app_label, m.name) for m, _ in plan]
    if planned != expected:
        raise BadRequest(
            "the database changed since the plan was shown: it now needs "
            + (", ".join(f"{a}.{n}" for a, n in planned) or "nothing")
            + "; run the rollback again to see the new plan"
        )
    if request.get("accept_data_loss"):
        berth_accept_loss(plan)
    try:
        for app, name in targets:
            call_command("migrate", app, name or "zero", interactive=False, stdout=sys.stdout)
    except Exception as error:  # the state is read and reported either way
        traceback.print_exc(file=sys.stdout)
        response["error"] = f"{type(error).__name__}: {error}".strip()
    response["applied"], unknown = berth_state(berth_executor())
    response["unknown"] = [{"app": a, "name": n} for a, n in unknown]
    return 1 if "error" in response else 0


def berth_main():
    response = {"applied": {}}
    try:
        request = json.loads(os.environ.get("BERTH_SCHEMA_REQUEST", ""))
        code = berth_run(request, response)
    except json.JSONDecodeError as error:
        response["error"], code = f"BERTH_SCHEMA_REQUEST is not JSON: {error}", 2
    except BadRequest as error:
        response["error"], code = str(error), 2
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(response, sort_keys=True), flush=True)
    sys.exit(code)


berth_main()
