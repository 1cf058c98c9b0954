"""`compressor-gui targets add|list|test|remove`: saved SSH benchmark targets."""

from __future__ import annotations

import argparse
import getpass
import json

from compressor_gui.core.errors import TargetError
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.targets.store import (
    TargetSpec,
    load_target,
    load_targets,
    remove_target,
    save_target,
    set_password,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="save a target (a password goes to the OS keyring only)")
    add.add_argument("name")
    add.add_argument("address", help="USER@HOST[:PORT]")
    add.add_argument("--key", dest="key_file", help="private key file (default: the SSH agent)")
    add.add_argument("--no-agent", action="store_true", help="do not ask the SSH agent for keys")
    add.add_argument("--python", default="python3", help="remote Python that has onnxruntime")
    add.add_argument("--remote-tmp", default="/tmp", help="remote folder for temp files")
    add.add_argument(
        "--password", action="store_true", help="ask for a password and keep it in the OS keyring"
    )
    actions.add_parser("list", help="list saved targets").add_argument(
        "--json", action="store_true"
    )
    test = actions.add_parser("test", help="connect and report what the machine is")
    test.add_argument("name")
    test.add_argument("--accept-host-key", metavar="SHA256:...", help="trust this new host key")
    test.add_argument("--json", action="store_true")
    actions.add_parser("remove", help="forget a target (and its keyring password)").add_argument(
        "name"
    )


def parse_address(address: str) -> tuple[str, str, int]:
    user, at, rest = address.rpartition("@")
    host, colon, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not at or not user or not (host if colon else rest):
        raise TargetError(f"address {address!r} should look like user@host or user@host:port")
    try:
        return user, host if colon else rest, int(port) if colon else 22
    except ValueError as exc:
        raise TargetError(f"port in {address!r} is not a number") from exc


def run(args: argparse.Namespace) -> int:
    if args.action == "add":
        user, host, port = parse_address(args.address)
        spec = TargetSpec(
            name=args.name,
            host=host,
            user=user,
            port=port,
            key_file=args.key_file,
            use_agent=not args.no_agent,
            python=args.python,
            remote_tmp=args.remote_tmp,
            password_in_keyring=args.password,
        )
        if args.password:
            set_password(spec, getpass.getpass(f"password for {spec.address}: "))
        path = save_target(spec)
        print(f"saved {spec.name} ({spec.address}) in {path}")
    elif args.action == "list":
        specs = list(load_targets().values())
        if args.json:
            print(json.dumps([vars(spec) for spec in specs], indent=2))
        for spec in [] if args.json else specs:
            auth = spec.key_file or ("agent" if spec.use_agent else "")
            if spec.password_in_keyring:
                auth += " + keyring password"
            print(f"{spec.name}  {spec.address}  ({auth.strip(' +') or 'no auth set'})")
    elif args.action == "test":
        from compressor_gui.targets.ssh import SshTarget

        info = SshTarget(load_target(args.name), accept_host_key=args.accept_host_key).describe()
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            machine = MachineInfo.from_dict(info.pop("machine"))
            print("\n".join(f"{key}: {value}" for key, value in info.items()))
            print(f"machine: {machine.summary}\nINT8 family: {machine.isa_class}")
    elif args.action == "remove":
        remove_target(args.name)
        print(f"removed {args.name}")
    return 0
