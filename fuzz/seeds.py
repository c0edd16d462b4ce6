#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

engine_differential: a 14-byte header (fuzz/src/case.rs) then a document.
config_load: configurations, as JSON.
Run from anywhere: python3 fuzz/seeds.py
"""
import hashlib
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

# Indices into case.rs PATHS and ACTIONS.
PATHS = ["a", "b", "a.b", "*", "**", "**.ssn", "*.id", "a.*", "a.**", '"a.b"', "id", "café",
         "**.a.b", "*.*", "entry.resource.id", "ssn", "b.**.a", "**.b.**", "a[*].b", '"\\""',
         "**.*", '"a.b".c', "entry.**", "a.b.c"]
ACTIONS = ["keep", "drop", "null", "year", "truncate2", "truncate1", "mask1", "mask0",
           "pseudonymize"]
DEPTHS = [1, 2, 3, 4, 6, 16, 64, 64]


def header(keep, rules, lines=False, depth=64, chunks=(0, 0, 0, 0), typed=None):
    """`typed`: None, or the default keep of type Patient (the rules are then Patient's)."""
    flags = (1 if keep else 0) | (2 if lines else 0) | (DEPTHS.index(depth) << 2)
    if typed is not None:
        flags |= 0x20 | (0x40 if typed else 0)
    out = [flags, *chunks, len(rules)]
    for path, action in rules + [("a", "keep")] * (4 - len(rules)):
        out += [PATHS.index(path), ACTIONS.index(action)]
    return bytes(out)


PATIENT = ('{"id":"p1","name":{"family":"Martin","given":["L\\u00e9a","Anne"]},'
           '"birthDate":"1984-03-07","ssn":"2840375123456",'
           '"address":{"line":"3 rue X","city":"Lyon","postalCode":"69003"},'
           '"conditions":[{"code":"E11","display":"Diab\u00e8te"},{"code":"I10","onset":2019}],'
           '"weight":7.10E+1}')
BUNDLE = ('{"resourceType":"Bundle","entry":[{"resource":{"id":"1","ssn":"x","name":"n"}},'
          '{"resource":{"id":2,"b":{"a":true}}},{"x":[1,2]}]}')

DIFFERENTIAL = [
    (header(False, [("id", "keep"), ("a.b", "keep")]), PATIENT),
    (header(True, [("**.ssn", "drop"), ("a.b", "null")]), PATIENT),
    (header(False, [("entry.resource.id", "pseudonymize")]), BUNDLE),
    (header(False, [("entry.**", "keep"), ("**.ssn", "drop")]), BUNDLE),
    (header(True, [("**.b.**", "drop"), ("*.id", "truncate2")]), BUNDLE),
    (header(True, [("a", "year"), ("b", "mask1")]),
     '{"a":"2024-02-29T10:00:00Z","b":"secret","a":["1999-12",{"x":1},null,true]}'),
    (header(False, [("a.*", "keep"), ("a.b.c", "drop"), ('"a.b"', "keep")]),
     '{"a":{"b":{"c":1,"d":2},"e":[]},"a.b":3,"\\u0061":{"b":{}}}'),
    (header(False, [("café", "keep"), ('"\\""', "keep"), ('"a.b".c', "keep")]),
     '{"caf\\u00e9":1,"cafe":2,"\\"":3,"":4,"\\ud83d\\ude00":5}'),
    (header(True, [("**", "mask0"), ("id", "keep")]),
     '[{"id":-0.0e+0,"n":1E400,"s":"\\u00e9\\/\\n"},12345678901234567890123,[]]'),
    (header(False, [("*.*", "keep"), ("**.*", "truncate1")], depth=4, chunks=(1, 0, 3, 7)),
     '{"a":{"b":[[{"c":"xyz"}]]},"d":"q"}'),
    (header(False, [("id", "keep")], lines=True, chunks=(5, 1, 0, 2)),
     '{"id":1,"n":"a"}\n\n{"n":2}\r\n [{"id":3}] \n'),
    (header(True, [("b.**.a", "drop"), ("a[*].b", "null")], lines=True),
     '{"b":{"x":{"a":1}},"a":[{"b":2},{"c":3}]}\n"text"\n'),
    (header(False, [], depth=2), '[[[1]]]'),
    (header(True, [("ssn", "drop")], depth=1), '{"ssn":1,"a":{"b":2}}'),
    (header(False, [("id", "keep")]), '{"id":1,"x":[1,2,}'),
    (header(False, [("id", "keep")]), '{"id":1,"x":"\\ud800"}'),
    (header(True, [("ssn", "drop")]), '\ufeff{"ssn":1}'),
    (header(True, [("ssn", "drop")]), '{"ssn":1}{'),
    (header(False, [("a", "year")]), '{"a":"not a date"}'),
    (header(True, []), '{"a":[1,{"b":null}]} '),
    (header(False, []), '"text"'),
    (header(True, [("**", "keep")], chunks=(1, 1, 1, 1)), ' {"a" : [ 1 , 2 ] } '),
    # Containers under null and under transforms (an array's scalars are disguised).
    (header(True, [("a", "null"), ("b.**.a", "keep")]), '{"a":{"x":1},"b":[{"a":[1]}],"a":[]}'),
    (header(False, [("a", "truncate1"), ("b", "pseudonymize")]),
     '{"a":["xy",{"b":1},["zz",[]],true,null,12],"b":[{"c":1}]}'),
    # Typed rules: the type member first, last, escaped, nested, not a string, twice.
    (header(False, [("id", "keep"), ("a.b", "null")], typed=False),
     '{"resourceType":"Bundle","entry":[{"resource":{"id":"1","ssn":"x","resourceType":"Patient",'
     '"a":{"b":1,"c":2}}},{"resource":{"resource\\u0054ype":"Practitioner","id":"2"}}]}'),
    (header(True, [("**.ssn", "drop")], typed=True, chunks=(3, 1, 0, 5)),
     '[{"ssn":1,"x":{"resourceType":"Patient","ssn":2}},{"resourceType":"Pati\\u0065nt","id":3}]'),
    (header(False, [("id", "keep")], typed=True, lines=True),
     '{"id":1,"resourceType":"Patient"}\n{"resourceType":7}\n'),
    (header(True, [], typed=False),
     '{"resourceType":"Patient","id":1,"resourceType":"Patient"}'),
]

CONFIGS = [
    {"policies": {"p": {"auth": "none", "default_purpose": "a", "purposes": {"a": {}}}}},
    {
        "purpose_header": "x-purpose",
        "unmatched": "deny",
        "limits": {"max_body_bytes": 8388608, "max_depth": 64},
        "token": {"client_claim": "client_id", "purposes_claim": "purposes"},
        "pseudonymization": {"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": True},
        "policies": {
            "patients": {
                "match": [{"prefix": "/patients", "methods": ["GET"]}],
                "auth": "required",
                "scopes": {"GET": ["patients:read"], "*": ["patients:write"]},
                "purposes": {
                    "care": {"default": "keep"},
                    "billing": {"fields": {"id": "keep", "name": "keep", "insurance": "keep"}},
                    "research": {
                        "fields": {"id": "pseudonymize", "birthDate": "year",
                                   "address.postalCode": {"truncate": 2},
                                   "conditions.code": "keep", "**.ssn": "drop",
                                   "phone": {"mask": {"keep_last": 4}}, "notes": "null"},
                        "headers": {"remove": ["x-patient-*"]},
                    },
                },
            }
        },
    },
    {"unmatched": "allow", "policies": {"svc": {
        "auth": "mtls", "match": [{"path": "/exact"}],
        "clients": {"spiffe://example.org/ns/a/sa/b": {"purposes": ["care"], "scopes": ["s"]}},
        "scopes": {"*": {"any_of": ["s", "t"], "all_of": []}},
        "purposes": {"care": {"default": "keep", "fields": {"a.**": "drop", "*.b": "keep"},
                              "headers": {"keep": ["content-*", "*a*b*"]},
                              "passthrough_media_types": ["text/csv"], "streaming": True}}}}},
    {"policies": {"open": {"auth": "none", "default_purpose": "open-data", "mode": "dry_run",
                           "streaming": True,
                           "purposes": {"open-data": {"default": "drop", "fields": {
                               "**": "keep", "*": "drop", '"a.b".c': "keep",
                               "contacts[*].phone": {"mask": {"keep_last": 0}},
                               "x.**.y": {"truncate": 1}}}}}}},
    {"limits": {"max_depth": 1, "max_body_bytes": 1}, "policies": {"p": {"auth": "none",
        "default_purpose": "a", "purposes": {"a": {"fields": {"**.a.**": "year"}}}}}},
    # Refused at load: a typo, a bad path, an unknown action, an undefined purpose.
    {"policies": {"p": {"purposes": {"care": {"defualt": "keep"}}}}},
    {"policies": {"p": {"purposes": {"r": {"fields": {"a..b": "keep"}}}}}},
    {"policies": {"p": {"purposes": {"r": {"fields": {"birthDate": "yeer"}}}}}},
    {"policies": {"p": {"default_purpose": "x", "purposes": {"r": {}}}}},
]


def write(target, name, data):
    directory = HERE / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)


def main():
    for target in ("engine_differential", "config_load"):
        for old in (HERE / "corpus" / target).glob("*"):
            old.unlink()
    for i, (head, doc) in enumerate(DIFFERENTIAL):
        write("engine_differential", f"seed{i:02}", head + doc.encode())
    for i, config in enumerate(CONFIGS):
        write("config_load", f"seed{i:02}", json.dumps(config, ensure_ascii=False).encode())


if __name__ == "__main__":
    main()
