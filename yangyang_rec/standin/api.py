"""`api` commands of the stand-in, with FreeSWITCH 1.10's reply texts (see the api-* captures).

`run(fs, line)` returns `(body, follow_up)`: the body goes out as the `api/response`, then the
follow-up (if any) emits the events the command causes — in that order, as on the real switch.
"""

from __future__ import annotations

import json
from pathlib import Path

import gevent

from yangyang_rec.standin.calls import stamp_local

NO_CHANNEL = "-ERR No such channel!\n"
NO_SESSION = "-ERR Cannot locate session!\n"
RECORD_USAGE = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
BROADCAST_USAGE = "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
ROW_KEYS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr", "dest",
    "application", "application_data", "dialplan", "context", "read_codec", "read_rate", "read_bit_rate",
    "write_codec", "write_rate", "write_bit_rate", "secure", "hostname", "presence_id", "presence_data",
    "accountcode", "callstate", "callee_name", "callee_num", "callee_direction", "call_uuid", "sent_callee_name",
    "sent_callee_num", "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
    "initial_dialplan", "initial_context",
)


def run(fs, line: str):
    cmd, _, arg = line.strip().partition(" ")
    handler = COMMANDS.get(cmd)
    if handler is None:
        return f"-ERR {cmd} Command not found!\n", None
    return handler(fs, arg.strip())


def _reply(body):
    return body, None


def status(fs, arg):
    return _reply(fs.uptime_text())


def version(fs, arg):
    return _reply("FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n")


def channel_row(channel) -> dict[str, str]:
    h = channel.header
    created = channel.created_us
    app = h("variable_current_application") if channel.leg == "A" else ""
    row = {
        "uuid": channel.uuid, "direction": h("Call-Direction"), "created": stamp_local(created),
        "created_epoch": str(created // 1_000_000), "name": h("Channel-Name"),
        "state": channel.state.get("Channel-State") or h("Channel-State"),
        "cid_name": h("Caller-Caller-ID-Name"), "cid_num": h("Caller-Caller-ID-Number"),
        "ip_addr": h("Caller-Network-Addr"), "dest": h("Caller-Destination-Number"),
        "application": app, "application_data": h("variable_current_application_data") if app else "",
        "dialplan": h("Caller-Dialplan"), "context": h("Caller-Context"),
        "read_codec": h("Channel-Read-Codec-Name"), "read_rate": h("Channel-Read-Codec-Rate"),
        "read_bit_rate": h("Channel-Read-Codec-Bit-Rate"), "write_codec": h("Channel-Write-Codec-Name"),
        "write_rate": h("Channel-Write-Codec-Rate"), "write_bit_rate": h("Channel-Write-Codec-Bit-Rate"),
        "secure": "", "hostname": "vm", "presence_id": "", "presence_data": "", "accountcode": "",
        "callstate": channel.state.get("Channel-Call-State") or h("Channel-Call-State"),
        "callee_name": h("Caller-Callee-ID-Name"), "callee_num": h("Caller-Callee-ID-Number"),
        "callee_direction": "SEND" if h("Caller-Callee-ID-Number") else "",
        "call_uuid": h("Channel-Call-UUID"), "sent_callee_name": h("variable_last_sent_callee_id_name"),
        "sent_callee_num": h("variable_last_sent_callee_id_number"),
        "initial_cid_name": h("Caller-Orig-Caller-ID-Name"), "initial_cid_num": h("Caller-Orig-Caller-ID-Number"),
        "initial_ip_addr": h("Caller-Network-Addr"), "initial_dest": h("Caller-Destination-Number"),
        "initial_dialplan": h("Caller-Dialplan"), "initial_context": h("Caller-Context"),
    }
    return {k: row.get(k, "") for k in ROW_KEYS}


def show(fs, arg):
    words = arg.split()
    what = words[0] if words else ""
    as_json = words[-2:] == ["as", "json"]
    if what not in ("channels", "calls"):
        return _reply("-USAGE: show <channels|calls|...>\n")
    channels = [c for c in fs.channels.values() if not c.gone and c.snapshot]
    channels.sort(key=lambda c: c.created_us)
    rows = [channel_row(c) for c in channels]
    if as_json:
        if not rows:
            return _reply('{"row_count": 0}\n')
        return _reply(json.dumps({"row_count": len(rows), "rows": rows}, ensure_ascii=False, separators=(",", ":")))
    lines = [",".join(ROW_KEYS)]
    lines += [",".join(r[k] for k in ROW_KEYS) for r in rows]
    return _reply("\n".join(lines) + f"\n\n{len(rows)} total.\n")


def _channel(fs, uuid):
    channel = fs.channels.get(uuid)
    if channel is None or channel.gone:
        return None
    return channel


def uuid_record(fs, arg):
    words = arg.split()
    if len(words) < 3 or words[1] not in ("start", "stop", "mask", "unmask"):
        return _reply(RECORD_USAGE)
    uuid, action, path = words[0], words[1], words[2]
    channel = _channel(fs, uuid)
    if channel is None:
        return _reply(NO_SESSION)
    if action == "start":
        limit = float(words[3]) if len(words) > 3 and words[3].isdigit() else None
        reply = fs.start_recording(channel, path, limit)
        if reply.startswith("+OK"):
            return reply, lambda: fs.recording_started_events(channel, path)
        return _reply(reply)
    if action == "stop":
        recs = [r for r in channel.recordings if path == "all" or r.path == path]
        if not recs:
            return _reply("-ERR Cannot stop record session!\n")

        def stop_them():
            for rec in recs:
                fs.stop_recording(rec, "success-maxtime")

        return "+OK Success\n", stop_them
    return _reply("+OK Success\n")


def uuid_broadcast(fs, arg):
    words = arg.split()
    if len(words) < 2:
        return _reply(BROADCAST_USAGE)
    channel = _channel(fs, words[0])
    if channel is None:
        return _reply("-ERR invalid uuid\n")
    path, legs = words[1], (words[2] if len(words) > 2 else "aleg")
    targets = [channel]
    if legs in ("bleg", "both"):
        other = _other_leg(channel)
        targets = ([channel] if legs == "both" else []) + ([other] if other else [])

    def play():
        for target in targets:
            gevent.spawn(_playback, fs, target, path)

    return "+OK Message sent\n", play


def _other_leg(channel):
    run = channel.run
    other = "B" if channel.leg == "A" else "A"
    return run.channels.get(other)


def _playback_seconds(path: str) -> float | None:
    """How long the file plays; None when it cannot be opened (FreeSWITCH then skips PLAYBACK_*)."""
    if path.startswith("tone_stream://"):
        loops = 1
        if "loops=" in path:
            try:
                loops = max(1, int(path.split("loops=")[1].split(";")[0]))
            except ValueError:
                loops = 1
        return float(loops)
    try:
        import wave

        with wave.open(str(Path(path)), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (OSError, EOFError, Exception):
        return None


def _playback(fs, channel, path):
    app = {"app": "playback", "app_data": path, "file": path, "file_type": path.split("://")[0] if "://" in path else ""}
    seconds = _playback_seconds(path)
    channel.vars.update(current_application="playback", current_application_data=path)
    fs.emit(fs.on_demand("CHANNEL_EXECUTE:playback", channel, app))
    if seconds is not None:
        fs.emit(fs.on_demand("PLAYBACK_START", channel, app))
        gevent.sleep(fs.clock.wall_seconds(seconds))
        if channel.gone:
            return
        channel.vars.update(playback_seconds=str(int(seconds)), playback_ms=str(int(seconds * 1000)),
                            playback_samples=str(int(seconds * 8000)))
        fs.emit(fs.on_demand("PLAYBACK_STOP", channel, app))
        app["app_response"] = "FILE PLAYED"
    else:
        app["app_response"] = "FILE NOT FOUND"
    channel.vars["current_application_response"] = app["app_response"]
    fs.emit(fs.on_demand("CHANNEL_EXECUTE_COMPLETE:playback", channel, app))
    fs.emit(fs.on_demand("PRIVATE_COMMAND", channel, {}))


def uuid_setvar(fs, arg):
    words = arg.split(" ", 2)
    if len(words) < 2:
        return _reply("-USAGE: <uuid> <var> [value]\n")
    channel = _channel(fs, words[0])
    if channel is None:
        return _reply(NO_CHANNEL)
    if len(words) > 2:
        channel.vars[words[1]] = words[2]
    else:
        channel.vars.pop(words[1], None)
    return _reply("+OK\n")


def uuid_getvar(fs, arg):
    words = arg.split()
    if len(words) < 2:
        return _reply("-USAGE: <uuid> <var>\n")
    channel = _channel(fs, words[0])
    if channel is None:
        return _reply(NO_CHANNEL)
    value = channel.getvar(words[1])
    return _reply("_undef_" if value is None else value)


def uuid_exists(fs, arg):
    return _reply("true" if _channel(fs, arg.split()[0] if arg else "") else "false")


def uuid_kill(fs, arg):
    words = arg.split()
    channel = _channel(fs, words[0]) if words else None
    if channel is None:
        return _reply(NO_CHANNEL)
    return "+OK\n", lambda: channel.run.interrupt("kill", channel.leg)


def uuid_transfer(fs, arg):
    words = arg.split()
    if len(words) < 2:
        return _reply("-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n")
    channel = _channel(fs, words[0])
    if channel is None:
        return _reply(NO_CHANNEL)
    if words[1] == "-bleg":
        what, dest = "transfer_bleg", words[2] if len(words) > 2 else ""
    else:
        what, dest = "transfer_aleg", words[1]
    return "+OK\n", lambda: channel.run.interrupt(what, dest)


def uuid_send_dtmf(fs, arg):
    words = arg.split()
    channel = _channel(fs, words[0]) if words else None
    if channel is None or len(words) < 2:
        return _reply(NO_CHANNEL)
    return _reply(f"+OK {channel.uuid} sent DTMF {words[1]}.\n")


def originate(fs, arg):
    """For tests: `originate {vars}sofia/internal/<ext>@host &park` places an answered inbound call."""
    target = arg.split("}")[-1].split()[0] if arg else ""
    if not target.startswith(("sofia/", "user/")) or "doesnotexist" in target:
        return _reply("-ERR NO_ROUTE_DESTINATION\n")
    ext = target.split("/")[-1].split("@")[0]
    number, name = "0000000000", "Caller"
    if "origination_caller_id_number=" in arg:
        number = arg.split("origination_caller_id_number=")[1].split(",")[0].split("}")[0]
    if "origination_caller_id_name=" in arg:
        name = arg.split("origination_caller_id_name=")[1].split(",")[0].split("}")[0]
    call = fs.place_call(kind="inbound", line=ext, outside=number, caller_name=name, ring_s=0.1, talk_s=3600)
    return _reply(f"+OK {call.a_uuid}\n")


def eval_(fs, arg):
    return _reply(arg.replace("${domain}", "127.0.0.1"))


def fsctl(fs, arg):
    if arg.strip() == "shutdown":
        return "+OK\n", lambda: gevent.spawn(fs.restart)
    return _reply("+OK\n")


COMMANDS = {
    "status": status, "version": version, "show": show, "uuid_record": uuid_record,
    "uuid_broadcast": uuid_broadcast, "uuid_setvar": uuid_setvar, "uuid_getvar": uuid_getvar,
    "uuid_exists": uuid_exists, "uuid_kill": uuid_kill, "uuid_transfer": uuid_transfer,
    "uuid_send_dtmf": uuid_send_dtmf, "originate": originate, "eval": eval_, "fsctl": fsctl,
}
