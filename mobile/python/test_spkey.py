"""The UniFFI layer from Python: a second language holding the binding
honest. The shared contract table, the typed calls and errors, and a sync
with a real spkey-hub. Run by mobile/test.sh with the generated module on
sys.path (SPKEY_PYTHON), the binaries in SPKEY_CLI / SPKEY_HUB.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, os.environ["SPKEY_PYTHON"])
import spkey_mobile as spkey  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
ID = "550e8400-e29b-41d4-a716-446655440000"
OTHER_ID = "6fa459ea-ee8a-3ca4-894e-db77e160355e"


def body(user_id, email):
    return json.dumps(
        {
            "userId": user_id,
            "email": email,
            "firstName": "John Doe",
            "lastName": "John Doe",
            "phoneNumber": "+1-555-0123",
        }
    )


def user_id(n):
    return "00000000-0000-4000-8000-%012d" % n


def test_every_case_of_the_shared_contract_table():
    table = json.loads((ROOT / "tests/fixtures/contract.json").read_text())
    store = spkey.NativeStore.in_memory()
    for given in table["given"]:
        assert store.create_user(given["id"], given["body"]).status == 201
    sent = 0
    for case in table["cases"]:
        if "body" in case:
            request = case["body"]
        elif "bodyOfSpaces" in case:
            request = " " * case["bodyOfSpaces"]
        else:
            continue  # a Python str cannot be bytes that are not UTF-8
        answer = store.create_user(case["id"], request)
        error = json.loads(answer.body)
        assert answer.status == case["status"], case["name"]
        assert error["code"] == case["status"], case["name"]
        assert [d["field"] for d in error["details"]] == case["fields"], case["name"]
        assert store.head_position() == 1, case["name"] + " changed the store"
        sent += 1
    assert sent == len(table["cases"]) - 1
    store.close_store()


def test_typed_calls_and_errors(tmp_path):
    store = spkey.NativeStore.open(str(tmp_path / "users.redb"))
    created = store.create_user_typed(
        spkey.NewUser(id=ID, email="ann@example.com", first_name="Ann", last_name=None, phone_number=None)
    )
    assert created.is_CREATED() and created.event.position == 1
    replayed = store.create_user(ID, json.dumps({"userId": ID, "email": "ann@example.com", "firstName": "Ann"}))
    assert replayed.status == 200
    rejected = store.create_user_typed(
        spkey.NewUser(id=OTHER_ID, email="ANN@example.com", first_name=None, last_name=None, phone_number=None)
    )
    assert rejected.is_REJECTED() and rejected.status == 409
    assert [d.field for d in rejected.details] == ["email"]
    user = store.user_typed(ID)
    assert (user.email, user.first_name, user.version) == ("ann@example.com", "Ann", 1)
    assert json.loads(store.user(ID))["email"] == "ann@example.com"
    assert store.verify() == []
    with pytest.raises(spkey.SpkeyError.StoreLocked):
        spkey.NativeStore.open(str(tmp_path / "users.redb"))
    with pytest.raises(spkey.SpkeyError.InvalidArgument):
        store.user("not-a-uuid")
    store.close_store()
    with pytest.raises(spkey.SpkeyError.StoreClosed):
        store.head_position()
    words = tmp_path / "notes.txt"
    words.write_text("not a store " * 100)
    with pytest.raises(spkey.SpkeyError.NotAStore):
        spkey.NativeStore.open(str(words))
    assert words.read_text() == "not a store " * 100


class Token(spkey.TokenProvider):
    def __init__(self, token):
        self.value = token
        self.asked = 0

    def token(self):
        self.asked += 1
        return self.value


@pytest.fixture
def hub(tmp_path):
    key = "acme-key-for-the-python-tests"
    config = tmp_path / "hub.toml"
    config.write_text(
        f"""listen = "127.0.0.1:0"
data_dir = "{tmp_path / 'data'}"

[[organizations]]
id = "acme"
api_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]
jwt_secret = "a-secret-for-the-python-tests-only-32b"
"""
    )
    config.chmod(0o600)
    process = subprocess.Popen(
        [os.environ["SPKEY_HUB"], "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "hub.log", "w"),
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        token = subprocess.run(
            [os.environ["SPKEY_HUB"], "token", "--config", str(config), "--org", "acme", "--service"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        yield line.removeprefix("listening on ").strip(), key, token
    finally:
        process.kill()
        process.wait()


def test_an_update_on_the_wire_and_typed():
    store = spkey.NativeStore.in_memory()
    assert store.create_user(ID, body(ID, "user@example.com")).status == 201
    updated = store.update_user(ID, json.dumps({"email": "new@example.com", "lastName": None}))
    assert updated.status == 200, updated.body
    assert json.loads(updated.body)["event"]["eventType"] == "UserUpdated"
    assert store.update_user(OTHER_ID, '{"firstName":"X"}').status == 404
    # The old email is free for another user; the new one is not.
    assert store.create_user(OTHER_ID, body(OTHER_ID, "USER@example.com")).status == 201
    taken = store.update_user_typed(
        spkey.UserChanges(
            id=OTHER_ID, email="NEW@example.com", first_name=None, last_name=None,
            phone_number=None, clear=[],
        )
    )
    assert isinstance(taken, spkey.UpdateOutcome.REJECTED)
    assert (taken.status, [d.field for d in taken.details]) == (409, ["email"])
    cleared = store.update_user_typed(
        spkey.UserChanges(
            id=ID, email=None, first_name=None, last_name=None, phone_number=None,
            clear=[spkey.ClearableField.PHONE_NUMBER],
        )
    )
    assert isinstance(cleared, spkey.UpdateOutcome.UPDATED)
    user = store.user_typed(ID)
    assert (user.email, user.last_name, user.phone_number, user.version) == (
        "new@example.com", None, None, 3,
    )
    assert store.verify() == []


def test_a_sync_with_a_real_hub(hub):
    url, key, token = hub
    phone, tablet = spkey.NativeStore.in_memory(), spkey.NativeStore.in_memory()
    assert phone.create_user(ID, body(ID, "ann@example.com")).status == 201
    assert tablet.create_user(OTHER_ID, body(OTHER_ID, "ANN@example.com")).status == 201
    provider = Token(token)
    pushed = phone.sync(url, key, provider, None, None)
    assert (pushed.pushed, pushed.accepted) == (1, 1)
    assert provider.asked >= 2
    refused = tablet.sync(url, key, Token(token), None, None)
    assert (refused.rejected, refused.pulled) == (1, 1)
    (rejection,) = tablet.rejections()
    assert rejection.aggregate_id == OTHER_ID
    data = json.loads(rejection.json)["data"]
    assert (data["code"], [d["field"] for d in data["details"]]) == (409, ["email"])
    with pytest.raises(spkey.SpkeyError.HubRefused) as refusal:
        tablet.sync(url, "wrong-key", Token(token), None, None)
    assert refusal.value.status == 403
    attempt = tablet.sync_once("http://127.0.0.1:9", key, Token(token), 5_000)
    assert attempt.retry and attempt.summary is None
