"""d365ri: the command line. Parsing and printing only; the work is in ops.py and watch.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from d365ri import __version__
from d365ri.errors import EXIT_AUTH, EXIT_ERROR, EXIT_OK, EXIT_USAGE, ClientError, UsageError

EPILOG_MAIN = """\
partner tasks:
  send files      d365ri enqueue customers ./out/customers.csv --wait
  receive files   d365ri dequeue sales-orders --out ./inbox
  watch folders   d365ri watch --input ./outbox --job customers --output ./inbox --export-job sales-orders

sign-in (profiles live in a JSON config file; secrets only in the environment or in files):
  d365ri profile add prod --base-url https://contoso.operations.dynamics.com \\
      --tenant contoso.onmicrosoft.com --client-id <app id> --auth secret --secret-env D365RI_CLIENT_SECRET
  d365ri profile add-job prod customers <activity id> --entity "Customer groups" --company usmf \\
      --project CustomerGroupsImport
  d365ri login                       # gets (and caches) a token, and says whose it is
  D365RI_TOKEN=<jwt> d365ri --base-url http://127.0.0.1:7071 ...   # a token you already have (dev, CI)

exit codes: 0 ok, 1 error, 2 usage, 3 sign-in refused or not allowed (401/403), 4 network,
  10 ended with errors (ProcessedWithErrors, PartiallySucceeded), 11 failed (PreProcessingError,
  PostProcessingFailed, Failed, Canceled), 12 still running
"""


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def common_options(*, top: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. Subcommands get them with SUPPRESS defaults, or their
    defaults would overwrite what was given before the command (`d365ri --json enqueue ...`)."""
    common = argparse.ArgumentParser(add_help=False)
    kw = {} if top else {"default": argparse.SUPPRESS}
    flag = {} if top else {"default": argparse.SUPPRESS}
    g = common.add_argument_group("connection")
    g.add_argument(
        "--config", help="the config file (default: $D365RI_CONFIG or the per-user config folder)", **kw
    )
    g.add_argument(
        "--profile", "-p", help="the profile to use (default: $D365RI_PROFILE, defaultProfile)", **kw
    )
    g.add_argument(
        "--base-url", help="the API's base URL (overrides the profile; also $D365RI_BASE_URL)", **kw
    )
    g.add_argument(
        "--token-file",
        help="read a bearer token from this file ('-' for stdin) instead of signing in (dev tokens, CI); "
        "$D365RI_TOKEN does the same",
        **kw,
    )
    g.add_argument(
        "--json", action="store_true", help="print results as JSON (watch: one JSON event per line)", **flag
    )
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notes on stderr", **flag)
    g.add_argument("--retries", type=int, help="retries for network errors, 429, 5xx (default 6)", **kw)
    g.add_argument("--verbose", "-v", action="store_true", help="log HTTP retries and waits", **flag)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options(top=False)

    parser = argparse.ArgumentParser(
        prog="d365ri",
        description="Partner client for Dynamics 365 recurring integrations (D365 or this product's API): "
        "send files, receive files, move data packages, and watch folders.",
        epilog=EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"d365ri {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = cmd(
        "enqueue",
        "send files to an import job (over the enqueue limit: through the package API)",
        "examples:\n"
        "  d365ri enqueue customers customers.csv --wait\n"
        "  d365ri enqueue 6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d a.csv b.csv --entity 'Customer groups' --company usmf\n"
        "  d365ri enqueue customers huge.csv --project CustomerGroupsImport   # package API when too large\n"
        "A retry sends the same external ID (default: the file name) and content, so the server answers the\n"
        "first message ID instead of importing the file twice.",
    )
    p.add_argument("job", help="the import job: its activity ID or an alias from the profile")
    p.add_argument("files", nargs="+", type=Path, help="files to send, in this order")
    p.add_argument("--entity", help="the entity (name or label), required by file jobs")
    p.add_argument("--company", help="the legal entity (default: the job's)")
    p.add_argument(
        "--external-id", help="x-ms-dyn-externalidentifier (default: the file name; one file only)"
    )
    p.add_argument("--project", help="the job's data project, for the package API path")
    p.add_argument(
        "--package",
        choices=("auto", "always", "never"),
        default="auto",
        help="use the package API: auto (over the profile's maxEnqueueBytes, or after a 413), always, never",
    )
    p.add_argument(
        "--template", type=Path, help="a package exported from the data project, to wrap the file in"
    )
    p.add_argument("--format", dest="source_format", help="the package manifest's SourceFormat (e.g. CSV)")
    p.add_argument(
        "--wait", action="store_true", help="wait until each file is imported; exit code by outcome"
    )
    p.add_argument("--timeout", type=_positive_float, help="with --wait: give up after this many seconds")
    p.add_argument("--errors-dir", type=Path, help="with --wait: save rejected records here")

    p = cmd(
        "status",
        "the status of a message (or package execution), its errors and rejected records",
        "examples:\n"
        "  d365ri status 3f2504e0-4f89-11d3-9a0c-0305e82c3301 --wait --job customers\n"
        "  d365ri status --execution 9b1d...  --errors-dir ./rejected",
    )
    p.add_argument("id", help="the message ID that enqueue printed (or an execution ID with --execution)")
    p.add_argument("--execution", action="store_true", help="the ID is a package API execution ID")
    p.add_argument("--job", help="the job (adds per-entity counts from jobstatus)")
    p.add_argument("--entity", help="the entity whose rejected records to fetch")
    p.add_argument("--wait", action="store_true", help="wait until the status is terminal")
    p.add_argument("--timeout", type=_positive_float, help="with --wait: give up after this many seconds")
    p.add_argument("--errors-dir", type=Path, help="save rejected records (CSV) here")

    p = cmd(
        "dequeue",
        "receive every waiting file of an export job into a folder, acking each once it is on disk",
        "example:\n  d365ri dequeue sales-orders --out ./inbox\n"
        "Each file is written as <CorrelationId>.zip (temporary name, size checked, then renamed), acked only\n"
        "then, until the server answers 204 (nothing waiting).",
    )
    p.add_argument("job", help="the export job: its activity ID or an alias from the profile")
    p.add_argument("--out", type=Path, required=True, help="the folder to write files to")
    p.add_argument("--max", type=int, help="stop after this many files")
    p.add_argument(
        "--no-ack", action="store_true", help="do not ack (the file comes again after the redelivery timeout)"
    )

    p = cmd(
        "import-package",
        "import a data package through the package API and follow the execution",
        "example:\n  d365ri import-package ./customers-package.zip --project CustomerGroupsImport --legal-entity usmf",
    )
    p.add_argument("file", type=Path, help="the data package (zip with Manifest.xml)")
    p.add_argument("--project", required=True, help="the data project (definitionGroupId)")
    p.add_argument("--legal-entity", help="legalEntityId")
    p.add_argument("--execution-id", help="the execution ID (default: a new GUID)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the execution to end")
    p.add_argument("--timeout", type=_positive_float, help="give up waiting after this many seconds")
    p.add_argument("--errors-dir", type=Path, help="save rejected records here")

    p = cmd(
        "export-package",
        "export a data project through the package API and download the package",
        "example:\n  d365ri export-package CustomerGroupsExport --legal-entity usmf --out ./exports",
    )
    p.add_argument("project", help="the data project (definitionGroupId)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write the package to")
    p.add_argument("--legal-entity", help="legalEntityId")
    p.add_argument("--execution-id", help="the execution ID (default: a new GUID)")
    p.add_argument("--package-name", help="packageName (default: <project>-<execution ID>)")
    p.add_argument("--timeout", type=_positive_float, help="give up waiting after this many seconds")

    p = cmd(
        "watch",
        "the scheduler: send an input folder's files, file them by outcome, receive exports",
        "examples:\n"
        "  d365ri watch --input ./outbox --job customers --output ./inbox --export-job sales-orders\n"
        "  d365ri watch --input ./outbox --job customers --once      # one pass, for cron\n"
        "Files go to <input>/success or <input>/error (with <name>.status.json) by their final status.\n"
        "State is kept in <folder>/.d365ri-watch.json: after a crash or restart nothing is sent twice or lost.",
    )
    p.add_argument("--input", type=Path, help="the folder whose files are sent")
    p.add_argument("--job", help="the import job of --input")
    p.add_argument("--success", type=Path, help="where imported files go (default: <input>/success)")
    p.add_argument("--error", type=Path, help="where failed files go (default: <input>/error)")
    p.add_argument("--entity", help="the entity of the files")
    p.add_argument("--company", help="the legal entity")
    p.add_argument("--project", help="the data project, for files over the enqueue limit")
    p.add_argument("--order", choices=("name", "time"), default="name", help="sending order (default: name)")
    p.add_argument("--settle", type=_positive_float, default=2.0, help="seconds a file must be unchanged (2)")
    p.add_argument("--output", type=Path, help="the folder that receives the export job's files")
    p.add_argument("--export-job", help="the export job of --output")
    p.add_argument(
        "--state", type=Path, help="the state file (default: <input or output>/.d365ri-watch.json)"
    )
    p.add_argument("--interval", type=_positive_float, default=30.0, help="seconds between passes (30)")
    g2 = p.add_mutually_exclusive_group()
    g2.add_argument("--once", action="store_true", help="one pass, then exit (cron)")
    g2.add_argument("--until-idle", action="store_true", help="exit once nothing is waiting or in flight")

    p = cmd("login", "sign in (device code, secret or certificate), cache the token and show whose it is")
    p = cmd("logout", "forget the cached tokens of the profile")
    p = cmd("check", "check the base URL, the sign-in and (optionally) access to a job")
    p.add_argument("job", nargs="?", help="a job to check access to")

    p = cmd("profile", "manage profiles in the config file")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION")
    add = psub.add_parser("add", help="add or replace a profile", parents=[common])
    add.add_argument("name")
    add.add_argument("--tenant")
    add.add_argument("--client-id")
    add.add_argument("--auth", choices=("secret", "certificate", "device-code", "token"), default="secret")
    add.add_argument("--secret-env", help="the environment variable that holds the client secret")
    add.add_argument("--secret-file", help="a file that holds the client secret")
    add.add_argument("--certificate-file", help="PEM (key + certificate) or PFX file")
    add.add_argument("--certificate-password-env", help="the environment variable with the PFX/PEM password")
    add.add_argument("--token-env", help="auth token: the environment variable with a bearer token")
    add.add_argument("--scope", help="default: <base URL>/.default")
    add.add_argument("--authority", help="default: https://login.microsoftonline.com")
    add.add_argument("--max-enqueue-bytes", type=int, help="files over this go through the package API")
    add.add_argument("--default", action="store_true", help="make it the default profile")
    aj = psub.add_parser("add-job", help="name a job of a profile, with its defaults", parents=[common])
    aj.add_argument("name", help="the profile")
    aj.add_argument("alias")
    aj.add_argument("activity_id")
    aj.add_argument("--entity")
    aj.add_argument("--company")
    aj.add_argument("--project")
    psub.add_parser("list", help="list profiles", parents=[common])
    sh = psub.add_parser("show", help="show a profile (no secrets)", parents=[common])
    sh.add_argument("name", nargs="?")
    return parser


# Entry point ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from d365ri.output import Output

    out = Output(as_json=args.json, quiet=args.quiet)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s")
    try:
        return run(args, out)
    except ClientError as exc:
        if args.json:
            import json

            err = {"error": {"message": exc.message, "hint": exc.hint, "exitCode": exc.exit_code}}
            code = getattr(exc, "code", None)
            if code:
                err["error"]["code"] = code
            print(json.dumps(err), file=sys.stdout, flush=True)
        print(f"d365ri: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("d365ri: interrupted", file=sys.stderr)
        return 130


def run(args, out) -> int:
    from d365ri import config

    if args.command == "profile":
        return profile_command(args, out)
    path = config.config_path(args.config)
    profile = config.load_profile(path, args.profile, base_url=args.base_url)
    if args.token_file:
        profile.auth, profile.token_file, profile.token_command = "token", args.token_file, None
        if args.token_file == "-":
            os.environ["D365RI_TOKEN_STDIN"] = sys.stdin.readline().strip()
            profile.token_file, profile.token_env = None, "D365RI_TOKEN_STDIN"
    if args.retries is not None:
        profile.retries = args.retries
    from d365ri.api import Api
    from d365ri.auth import provider_for
    from d365ri.http import Transport

    tokens = provider_for(profile)
    transport = Transport(
        profile.base_url,
        tokens,
        retries=profile.retries,
        timeout=profile.timeout,
        verify=profile.ca_bundle or True,
        on_wait=out.note,
    )
    api = Api(transport, quiet=args.quiet)
    handler = {
        "enqueue": cmd_enqueue,
        "status": cmd_status,
        "dequeue": cmd_dequeue,
        "import-package": cmd_import_package,
        "export-package": cmd_export_package,
        "watch": cmd_watch,
        "login": cmd_login,
        "logout": cmd_logout,
        "check": cmd_check,
    }[args.command]
    return handler(args, out, api, profile, tokens)


def _timeout(args) -> float | None:
    return args.timeout if args.timeout else None


def cmd_enqueue(args, out, api, profile, tokens) -> int:
    from d365ri.ops import (
        SendOptions,
        execution_report,
        exit_code_for,
        message_report,
        send_file,
        wait_execution,
        wait_message,
    )

    if args.external_id and len(args.files) > 1:
        raise UsageError(
            "--external-id names one file; send files one at a time or let it default to file names"
        )
    job = profile.job(args.job)
    opts = SendOptions(
        entity=args.entity,
        company=args.company,
        external_id=args.external_id,
        project=args.project,
        package=args.package,
        template=args.template,
        source_format=args.source_format,
    )
    results, worst = [], EXIT_OK
    for file in args.files:
        result = send_file(api, job, file, opts, max_enqueue_bytes=profile.max_enqueue_bytes, log=out.note)
        ident = result.get("messageId") or result.get("executionId")
        out.note(f"{file.name}: sent ({result['path']}) as {ident}")
        if args.wait:

            def changed(status, name=file.name):
                out.note(f"{name}: {status}")

            if result["path"] == "package":
                status = wait_execution(api, result["executionId"], timeout=_timeout(args), on_change=changed)
                result.update(
                    execution_report(
                        api,
                        result["executionId"],
                        status,
                        entity=opts.entity or job.entity,
                        errors_dir=args.errors_dir,
                    )
                )
            else:
                status = wait_message(api, result["messageId"], timeout=_timeout(args), on_change=changed)
                result.update(
                    message_report(
                        api,
                        result["messageId"],
                        status,
                        job=job.activity_id,
                        entity=opts.entity or job.entity,
                        errors_dir=args.errors_dir,
                    )
                )
            code = exit_code_for(status)
            worst = max(worst, code)
        results.append(result)
    columns = ["file", "path", "messageId", "executionId", "status"]
    out.result(results if len(results) > 1 else results[0], table=_flat(results, columns), columns=columns)
    return worst


def _flat(rows: list[dict], columns: list[str]) -> list[dict]:
    return [{c: (Path(r[c]).name if c == "file" and r.get(c) else r.get(c)) for c in columns} for r in rows]


def cmd_status(args, out, api, profile, tokens) -> int:
    from d365ri.api import EXECUTION_TERMINAL, MESSAGE_TERMINAL, clean_id
    from d365ri.ops import execution_report, exit_code_for, message_report, wait_execution, wait_message

    ident = clean_id(args.id)
    job = profile.job(args.job).activity_id if args.job else None
    entity = args.entity or (profile.job(args.job).entity if args.job else None)
    changed = (lambda s: out.note(f"{ident}: {s}")) if args.wait else None
    if args.execution:
        if args.wait:
            status = wait_execution(api, ident, timeout=_timeout(args), on_change=changed)
        else:
            status = api.execution_status(ident)
        report = execution_report(api, ident, status, entity=entity, errors_dir=args.errors_dir)
        terminal = status in EXECUTION_TERMINAL
    else:
        if args.wait:
            status = wait_message(api, ident, timeout=_timeout(args), on_change=changed)
        else:
            status = api.message_status(ident)
        report = message_report(api, ident, status, job=job, entity=entity, errors_dir=args.errors_dir)
        terminal = status in MESSAGE_TERMINAL
    out.result(report)
    return exit_code_for(status) if terminal else exit_code_for(None)


def cmd_dequeue(args, out, api, profile, tokens) -> int:
    from d365ri.ops import dequeue_all

    job = profile.job(args.job)
    got = dequeue_all(api, job, args.out, ack=not args.no_ack, limit=args.max, log=out.note)
    for item in got:
        out.note(f"received {item['file']} ({item['size']} bytes)" + (", acked" if item.get("acked") else ""))
    columns = ["correlationId", "file", "size", "acked"]
    out.result({"job": job.activity_id, "files": got}, table=got, columns=columns)
    return EXIT_OK


def cmd_import_package(args, out, api, profile, tokens) -> int:
    from d365ri.ops import execution_report, exit_code_for, import_package, wait_execution

    result = import_package(
        api, args.file, args.project, legal_entity=args.legal_entity, execution_id=args.execution_id
    )
    out.note(f"{args.file.name}: import started as execution {result['executionId']}")
    if args.no_wait:
        out.result(result)
        return EXIT_OK
    status = wait_execution(
        api, result["executionId"], timeout=_timeout(args), on_change=lambda s: out.note(f"execution: {s}")
    )
    result.update(
        execution_report(api, result["executionId"], status, entity=None, errors_dir=args.errors_dir)
    )
    out.result(result)
    return exit_code_for(status)


def cmd_export_package(args, out, api, profile, tokens) -> int:
    from d365ri.ops import exit_code_for, export_package

    report = export_package(
        api,
        args.project,
        args.out,
        legal_entity=args.legal_entity,
        execution_id=args.execution_id,
        package_name=args.package_name,
        timeout=_timeout(args),
        on_change=lambda s: out.note(f"export: {s}"),
    )
    out.result(report)
    return exit_code_for(report["status"])


def cmd_watch(args, out, api, profile, tokens) -> int:
    from d365ri.files import LockBusy
    from d365ri.ops import SendOptions
    from d365ri.watch import WatchConfig, Watcher

    cfg = WatchConfig(
        input_dir=args.input,
        success_dir=args.success,
        error_dir=args.error,
        job=profile.job(args.job) if args.job else None,
        send=SendOptions(entity=args.entity, company=args.company, project=args.project),
        output_dir=args.output,
        export_job=profile.job(args.export_job) if args.export_job else None,
        state_file=args.state,
        order=args.order,
        settle=args.settle,
        interval=args.interval,
        max_enqueue_bytes=profile.max_enqueue_bytes,
    )
    watcher = Watcher(api, cfg, events=out.event)
    try:
        return watcher.run(once=args.once, until_idle=args.until_idle)
    except LockBusy:
        raise ClientError(
            f"another d365ri watch is running on {watcher.state.path}",
            hint="one watch per state file; under cron this run simply skips",
        ) from None


def cmd_login(args, out, api, profile, tokens) -> int:
    from datetime import datetime, timezone

    from d365ri.auth import claims

    token = tokens.token()
    c = claims(token)
    exp = c.get("exp")
    info = {
        "profile": profile.name,
        "signedInAs": tokens.describe(),
        "application": c.get("appid") or c.get("azp"),
        "audience": c.get("aud"),
        "issuer": c.get("iss"),
        "roles": c.get("roles"),
        "expires": datetime.fromtimestamp(exp, timezone.utc).isoformat()
        if isinstance(exp, int | float)
        else None,
    }
    out.result(info)
    return EXIT_OK


def cmd_logout(args, out, api, profile, tokens) -> int:
    if hasattr(tokens, "sign_out"):
        tokens.sign_out()
    out.result({"profile": profile.name, "tokenCache": str(profile.cache_path), "cleared": True})
    return EXIT_OK


def cmd_check(args, out, api, profile, tokens) -> int:
    """GET / (RIS's "Validate connection"), a token, and a job probe: jobstatus of a message that does not
    exist answers 404 when the caller is allowed on the job, 403 when not, 500 UnknownActivity for no job."""
    import uuid

    from d365ri.errors import ApiError

    report: dict = {"baseUrl": profile.base_url}
    resp = api.t.request("GET", "/", what="GET /", auth=False, ok=(200, 204))
    report["root"] = resp.status_code
    token = tokens.token()
    from d365ri.auth import token_app_id

    report["application"] = token_app_id(token)
    code = EXIT_OK
    if args.job:
        job = profile.job(args.job)
        try:
            api.job_status(job.activity_id, str(uuid.uuid4()))
            report["job"] = "allowed"
        except ApiError as exc:
            if exc.status == 404:
                report["job"] = "allowed"
            elif exc.status in (401, 403):
                report["job"] = f"refused: {exc.server_message}"
                report["hint"] = exc.hint
                code = EXIT_AUTH
            else:
                report["job"] = f"{exc.status} {exc.code or ''}: {exc.server_message}"
                report["hint"] = exc.hint
                code = EXIT_ERROR
    out.result(report)
    return code


def profile_command(args, out) -> int:
    from d365ri import config

    path = config.config_path(args.config)
    data = config.read_config(path)
    action = args.profile_command
    if action == "add":
        if not args.base_url:
            raise UsageError("profile add needs --base-url")
        spec = {
            "baseUrl": args.base_url.rstrip("/"),
            "tenant": args.tenant,
            "clientId": args.client_id,
            "auth": args.auth,
            "secretEnv": args.secret_env,
            "secretFile": args.secret_file,
            "certificateFile": args.certificate_file,
            "certificatePasswordEnv": args.certificate_password_env,
            "tokenEnv": args.token_env,
            "scope": args.scope,
            "authority": args.authority,
            "maxEnqueueBytes": args.max_enqueue_bytes,
        }
        spec = {k: v for k, v in spec.items() if v is not None}
        if args.auth == "secret" and not (args.secret_env or args.secret_file):
            spec["secretEnv"] = "D365RI_CLIENT_SECRET"
        old = data["profiles"].get(args.name) or {}
        if old.get("jobs"):
            spec["jobs"] = old["jobs"]
        data["profiles"][args.name] = spec
        if args.default or not data.get("defaultProfile"):
            data["defaultProfile"] = args.name
        config.write_config(path, data)
        out.result({"profile": args.name, "config": str(path)})
        return EXIT_OK
    if action == "add-job":
        if args.name not in data["profiles"]:
            raise UsageError(f"no profile {args.name!r} in {path}")
        job = {"activityId": config.clean_guid(args.activity_id, "the activity ID")}
        job.update(
            {
                k: v
                for k, v in (("entity", args.entity), ("company", args.company), ("project", args.project))
                if v
            }
        )
        data["profiles"][args.name].setdefault("jobs", {})[args.alias] = job
        config.write_config(path, data)
        out.result({"profile": args.name, "job": args.alias, **job})
        return EXIT_OK
    if action == "list":
        rows = [
            {
                "name": n,
                "default": n == data.get("defaultProfile"),
                "baseUrl": p.get("baseUrl"),
                "auth": p.get("auth"),
            }
            for n, p in sorted(data["profiles"].items())
        ]
        out.result(rows, table=rows)
        return EXIT_OK
    if action == "show":
        profile = config.load_profile(path, args.name, base_url=args.base_url)
        out.result(profile.public())
        return EXIT_OK
    raise UsageError("profile needs an action: add, add-job, list, show")


if __name__ == "__main__":
    sys.exit(main())
