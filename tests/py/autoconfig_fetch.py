#!/usr/bin/env python3
"""Fetch one autoconfiguration document from autoconfigd and print what it
says as JSON (used by tests/tests/autoconfig.rs).

usage: autoconfig_fetch.py KIND URL [--post BODY] [--cafile CA] [--host HOST]
KIND: thunderbird | autodiscover | mobileconfig | raw

The document must parse (xml.etree for XML, plistlib for the profile); a
parse failure raises and exits non-zero. HTTP errors print
{"status": N, "body": ...} instead of failing, so the test can check them.
"""
import json
import plistlib
import ssl
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

AD_RESPONSE = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
AD_ROOT = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"


def text(el, tag):
    found = el.find(tag)
    if found is None:
        raise SystemExit(f"missing <{tag}>")
    return found.text


def thunderbird(body):
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1", root.tag
    prov = root.find("emailProvider")
    servers = []
    for kind in ("incomingServer", "outgoingServer"):
        for s in prov.findall(kind):
            servers.append({
                "kind": kind,
                "type": s.get("type"),
                "hostname": text(s, "hostname"),
                "port": int(text(s, "port")),
                "socketType": text(s, "socketType"),
                "authentication": text(s, "authentication"),
                "username": text(s, "username"),
            })
    return {"id": prov.get("id"), "domain": text(prov, "domain"), "servers": servers}


def autodiscover(body):
    root = ET.fromstring(body)
    assert root.tag == AD_ROOT + "Autodiscover", root.tag
    resp = root.find(AD_RESPONSE + "Response")
    acct = resp.find(AD_RESPONSE + "Account")
    assert text(acct, AD_RESPONSE + "AccountType") == "email"
    assert text(acct, AD_RESPONSE + "Action") == "settings"
    protos = []
    for p in acct.findall(AD_RESPONSE + "Protocol"):
        protos.append({k: text(p, AD_RESPONSE + k) for k in
                       ("Type", "Server", "Port", "SSL", "Encryption", "LoginName", "AuthRequired")})
    return {"protocols": protos}


def mobileconfig(body):
    pl = plistlib.loads(body)
    assert pl["PayloadType"] == "Configuration", pl["PayloadType"]
    assert pl["PayloadVersion"] == 1
    (mail,) = pl["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    return {"profile_uuid": pl["PayloadUUID"], "mail": mail}


def main():
    kind, url = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    data = None
    ctx = None
    headers = {}
    while args:
        opt, val, args = args[0], args[1], args[2:]
        if opt == "--post":
            data = val.encode()
            headers["Content-Type"] = "text/xml"
        elif opt == "--cafile":
            ctx = ssl.create_default_context(cafile=val)
        elif opt == "--host":
            headers["Host"] = val
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            body = r.read()
            ctype = r.headers.get("Content-Type")
            status = r.status
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": e.read().decode("utf-8", "replace")}))
        return
    out = {"status": status, "content_type": ctype}
    if kind == "thunderbird":
        out.update(thunderbird(body))
    elif kind == "autodiscover":
        out.update(autodiscover(body))
    elif kind == "mobileconfig":
        out.update(mobileconfig(body))
    else:
        out["body"] = body.decode()
    print(json.dumps(out))


main()
