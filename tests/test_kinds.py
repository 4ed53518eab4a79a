"""The registry of kinds (reconciler.kinds) is complete and consistent.

Adding a kind means adding its descriptor to ``KINDS``, its manifest model to ``MANIFEST_MODELS`` and
its wire mapping to ``WIRE`` below; these tests then say what the descriptor is missing: endpoints,
a parent that is registered, field shapes that name real fields, settings that must never be sent.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from reconciler.descope.endpoints import Endpoint, Endpoints
from reconciler.descope.wire import LiveClient, LiveServer, LiveState, WireError
from reconciler.kinds import (
    CLIENT,
    KINDS,
    SERVER,
    Action,
    Desired,
    Kind,
    KindDescriptor,
    LiveObject,
    children,
    depends_on,
    depth,
    desired_objects,
    desired_paths,
    level,
    lineage,
    live_objects,
    registered_elsewhere,
    roots,
)
from reconciler.models import (
    ClientSpec,
    Manifest,
    ProjectSpec,
    SecretRef,
    ServerSpec,
    Spec,
    StandaloneClientSpec,
)

# The manifest model each kind is written in, and how its wire objects are read.
MANIFEST_MODELS: Mapping[Kind, type[Spec]] = {Kind.SERVER: ServerSpec, Kind.CLIENT: StandaloneClientSpec}
WIRE: Mapping[Kind, Callable[[Mapping[str, Any]], LiveObject]] = {
    Kind.SERVER: LiveServer.from_wire,
    Kind.CLIENT: lambda data: LiveClient.from_wire(data, "S1"),
}

DESCRIPTORS = list(KINDS.values())
CHILDREN = [d for d in DESCRIPTORS if d.parent is not None]
WRITES = (Action.CREATE, Action.ADOPT, Action.UPDATE)
SECRET_ENDPOINTS = ("read_secret", "rotate_secret")
PROJECT = ProjectSpec(kind="Project", projectId="P2abc")


def _ids(descriptor: KindDescriptor) -> str:
    return descriptor.kind.value


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: ``Scope`` for ``tuple[Scope, ...]`` or ``Scope | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _annotation_at(model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """The annotation of the field at ``path`` in ``model``, walking nested models and their lists."""
    annotation: Any = model
    for n, part in enumerate(path):
        models = _models_in(annotation)
        assert len(models) == 1, f"{'.'.join(path[:n])} of {model.__name__} is not one nested model"
        fields = models[0].model_fields
        assert part in fields, f"{'.'.join(path[: n + 1])} is not a field of {model.__name__}"
        annotation = fields[part].annotation
    return annotation


def _is_list_of(annotation: Any, item: Any) -> bool:
    return get_origin(annotation) is tuple and get_args(annotation) == (item, ...)


def _walk(objects: tuple[Desired, ...]) -> Iterator[Desired]:
    for obj in objects:
        yield obj
        yield from _walk(obj.children)


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for part in reversed(path[1:]):
        value = {part: value}
    return {path[0]: value}


# ---- the registry ------------------------------------------------------------------------------


def test_every_kind_has_a_descriptor_a_manifest_model_and_a_wire_mapping() -> None:
    assert set(KINDS) == set(Kind), "a Kind without a descriptor in reconciler.kinds.KINDS"
    assert set(MANIFEST_MODELS) == set(Kind), "a Kind without its manifest model in MANIFEST_MODELS"
    assert set(WIRE) == set(Kind), "a Kind without its wire mapping in WIRE"
    assert all(KINDS[kind].kind is kind for kind in Kind)


def test_kind_names_for_people_are_distinct() -> None:
    assert len({d.plural for d in DESCRIPTORS}) == len(DESCRIPTORS)
    assert (SERVER.plural, CLIENT.plural) == ("servers", "clients")


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_a_parent_is_a_registered_kind_and_the_parents_have_no_cycle(descriptor: KindDescriptor) -> None:
    seen = [descriptor.kind]
    parent = descriptor.parent
    while parent is not None:
        assert parent in KINDS, f"{seen[-1]}'s parent {parent} has no descriptor"
        assert parent not in seen, f"the parents of {descriptor.kind} loop: {[*seen, parent]}"
        seen.append(parent)
        parent = KINDS[parent].parent


def test_the_tree_of_kinds() -> None:
    assert roots() == (SERVER,)
    assert children(Kind.SERVER) == (CLIENT,)
    assert children(Kind.CLIENT) == ()
    assert lineage(Kind.SERVER) == (SERVER,)
    assert lineage(Kind.CLIENT) == (SERVER, CLIENT)
    assert (depth(Kind.SERVER), depth(Kind.CLIENT)) == (0, 1)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_a_lineage_runs_from_a_root_down_to_the_kind(descriptor: KindDescriptor) -> None:
    chain = lineage(descriptor.kind)

    assert chain[0].parent is None
    assert chain[-1] is descriptor
    assert all(child.parent is parent.kind for parent, child in itertools.pairwise(chain))


@pytest.mark.parametrize("child", CHILDREN, ids=_ids)
def test_a_child_kind_is_listed_in_its_parent_manifest_entry_and_never_sent(child: KindDescriptor) -> None:
    assert child.parent is not None
    assert child.plural in MANIFEST_MODELS[child.parent].model_fields
    assert child.plural in KINDS[child.parent].manifest_only


# ---- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_every_descriptor_has_every_endpoint(descriptor: KindDescriptor) -> None:
    for name in (f.name for f in dataclasses.fields(Endpoints)):
        endpoint = getattr(descriptor.endpoints, name)
        if endpoint is None and name in SECRET_ENDPOINTS:
            continue
        assert isinstance(endpoint, Endpoint), f"{descriptor.kind} has no {name} endpoint"
        assert endpoint.method in ("GET", "POST"), f"{descriptor.kind} {name}: {endpoint}"
        assert endpoint.path.startswith("/v1/mgmt/"), f"{descriptor.kind} {name}: {endpoint}"


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_a_kind_has_secret_endpoints_exactly_when_it_holds_a_secret(descriptor: KindDescriptor) -> None:
    secret_endpoints = [getattr(descriptor.endpoints, name) for name in SECRET_ENDPOINTS]

    if descriptor.holds_secret:
        assert all(isinstance(endpoint, Endpoint) for endpoint in secret_endpoints)
    else:
        assert secret_endpoints == [None, None]


def test_no_two_endpoints_share_a_path() -> None:
    paths = [
        endpoint.path
        for descriptor in DESCRIPTORS
        for endpoint in (getattr(descriptor.endpoints, f.name) for f in dataclasses.fields(Endpoints))
        if endpoint is not None
    ]

    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)


def test_an_endpoint_reads_as_method_and_path() -> None:
    assert str(CLIENT.endpoints.rotate_secret) == "POST /v1/mgmt/mcp/server/client/secret/rotate"
    assert str(SERVER.endpoints.list) == "POST /v1/mgmt/mcp/servers/all"


# ---- order and dependencies --------------------------------------------------------------------


def test_the_levels_of_servers_and_clients() -> None:
    assert [level(Kind.SERVER, a) for a in WRITES] == [0, 0, 0]
    assert [level(Kind.CLIENT, a) for a in WRITES] == [1, 1, 1]
    assert (level(Kind.SERVER, Action.ROTATE_SECRET), level(Kind.CLIENT, Action.ROTATE_SECRET)) == (2, 3)
    assert (level(Kind.CLIENT, Action.DELETE), level(Kind.SERVER, Action.DELETE)) == (4, 5)


@pytest.mark.parametrize("child", CHILDREN, ids=_ids)
def test_parents_are_written_before_their_children_and_deleted_after_them(child: KindDescriptor) -> None:
    assert child.parent is not None
    for parent_action in WRITES:
        for child_action in WRITES:
            assert level(child.parent, parent_action) < level(child.kind, child_action)
    assert level(child.kind, Action.DELETE) < level(child.parent, Action.DELETE)


def test_rotations_come_after_every_write_and_before_every_delete() -> None:
    writes = [level(kind, action) for kind in Kind for action in WRITES]
    rotations = [level(kind, Action.ROTATE_SECRET) for kind in Kind]
    deletes = [level(kind, Action.DELETE) for kind in Kind]

    assert max(writes) < min(rotations)
    assert max(rotations) < min(deletes)


@pytest.mark.parametrize(
    ("on_path", "on_kind", "expected"),
    [
        (("calendar",), Kind.SERVER, True),  # its server
        (("calendar", "ci"), Kind.CLIENT, True),  # itself (a rotation after its update)
        (("calendar", "bot"), Kind.CLIENT, False),  # a sibling
        (("docs",), Kind.SERVER, False),  # another server
        (("docs", "ci"), Kind.CLIENT, False),  # another server's client of the same name
        (("calendar",), Kind.CLIENT, False),  # the kind at that depth is a server
        (("cal",), Kind.SERVER, False),  # a name that is a prefix of the server's
    ],
)
def test_what_a_client_depends_on(on_path: tuple[str, ...], on_kind: Kind, expected: bool) -> None:
    assert depends_on(("calendar", "ci"), Kind.CLIENT, on_path=on_path, on_kind=on_kind) is expected


@pytest.mark.parametrize(
    ("on_path", "on_kind", "expected"),
    [
        (("calendar",), Kind.SERVER, True),
        (("docs",), Kind.SERVER, False),
        (("calendar", "ci"), Kind.CLIENT, False),  # a server never waits for its clients
    ],
)
def test_what_a_server_depends_on(on_path: tuple[str, ...], on_kind: Kind, expected: bool) -> None:
    assert depends_on(("calendar",), Kind.SERVER, on_path=on_path, on_kind=on_kind) is expected


# ---- fields: manifest-only, read-only, shapes --------------------------------------------------


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_manifest_only_settings_are_fields_of_the_manifest_model(descriptor: KindDescriptor) -> None:
    fields = set(MANIFEST_MODELS[descriptor.kind].model_fields)

    assert descriptor.manifest_only <= fields, sorted(descriptor.manifest_only - fields)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_read_only_fields_cannot_be_written_in_a_manifest(descriptor: KindDescriptor) -> None:
    fields = set(MANIFEST_MODELS[descriptor.kind].model_fields)

    assert "id" in descriptor.read_only
    assert not descriptor.read_only & fields, sorted(descriptor.read_only & fields)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_set_paths_name_lists_of_text_in_the_manifest_model(descriptor: KindDescriptor) -> None:
    model = MANIFEST_MODELS[descriptor.kind]
    for path in descriptor.shapes.sets:
        annotation = _annotation_at(model, path)
        assert _is_list_of(annotation, str), f"{'.'.join(path)} of {model.__name__} is {annotation}"


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_keyed_paths_name_lists_of_objects_with_their_key_defaults_and_sets(
    descriptor: KindDescriptor,
) -> None:
    model = MANIFEST_MODELS[descriptor.kind]
    for path, keyed in descriptor.shapes.keyed.items():
        where = f"{'.'.join(path)} of {model.__name__}"
        annotation = _annotation_at(model, path)
        items = _models_in(annotation)
        assert get_origin(annotation) is tuple, f"{where} is not a list"
        assert len(items) == 1, f"{where} is not a list of objects"
        fields = items[0].model_fields
        assert keyed.key in fields, f"{where}: no key {keyed.key}"
        assert set(keyed.defaults) <= set(fields), f"{where}: defaults of no field"
        assert keyed.sets <= set(fields), f"{where}: sets of no field"
        assert keyed.key not in keyed.defaults, f"{where}: the key has a default"
        for name, default in keyed.defaults.items():
            # The manifest's own default for an attribute left out means what the differ reads it as.
            assert fields[name].default in (None, default), f"{where}.{name}: {fields[name].default!r}"


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_set_and_keyed_paths_are_distinct(descriptor: KindDescriptor) -> None:
    assert not descriptor.shapes.sets & set(descriptor.shapes.keyed)


# ---- the wire mapping --------------------------------------------------------------------------


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_the_wire_reads_id_name_and_every_field(descriptor: KindDescriptor) -> None:
    obj = WIRE[descriptor.kind]({"id": "X1", "name": "n", "futureField": {"a": 1}, "tags": ["t"]})

    assert (obj.id, obj.name, obj.tags, obj.fields["futureField"]) == ("X1", "n", ("t",), {"a": 1})


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_the_wire_checks_the_type_of_every_set_like_list(descriptor: KindDescriptor) -> None:
    read = WIRE[descriptor.kind]
    for path in descriptor.shapes.sets:
        where = ".".join(path)
        with pytest.raises(WireError, match=re.escape(f"{where} is a number, not a list")):
            read(_nested(path, 5))
        with pytest.raises(WireError, match=re.escape(f"{where}[0] is a number, not a string")):
            read(_nested(path, [5]))


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_ids)
def test_the_wire_checks_the_key_and_sets_of_every_keyed_list(descriptor: KindDescriptor) -> None:
    read = WIRE[descriptor.kind]
    for path, keyed in descriptor.shapes.keyed.items():
        where = ".".join(path)
        with pytest.raises(WireError, match=re.escape(f"{where}[0].{keyed.key} is a number, not a string")):
            read(_nested(path, [{keyed.key: 5}]))
        for name in keyed.sets:
            with pytest.raises(WireError, match=re.escape(f"{where}[0].{name} is a number, not a list")):
                read(_nested(path, [{keyed.key: "k", name: 5}]))


def test_live_under_gives_the_servers_and_the_clients_of_one_server() -> None:
    server = LiveServer.from_wire({"id": "S1", "name": "calendar"})
    client = LiveClient.from_wire({"id": "C1", "name": "ci"}, "S1")
    live = LiveState(servers=(server,), clients={"S1": (client,)})

    assert SERVER.live_under(live, None) == (server,)
    assert CLIENT.live_under(live, "S1") == (client,)
    assert CLIENT.live_under(live, "S2") == ()
    assert CLIENT.live_under(live, None) == ()


# ---- the desired tree --------------------------------------------------------------------------


def test_desired_objects_is_the_tree_of_the_manifest() -> None:
    calendar = ServerSpec(
        kind="MCPServer",
        name="calendar",
        description="Cal",
        tags=("b", "a"),
        protect=True,
        clients=(
            ClientSpec(name="ci", scopes=("read",), secret=SecretRef(sink="vault", key="k")),
            ClientSpec(name="bot", adopt=True),
        ),
    )
    docs = ServerSpec(kind="MCPServer", name="docs", adopt=True)
    manifest = Manifest(project=PROJECT, servers=(calendar, docs), locations={})

    assert desired_objects(manifest) == (
        Desired(
            Kind.SERVER,
            ("calendar",),
            {"name": "calendar", "description": "Cal", "tags": ["b", "a"]},
            protect=True,
            adopt=False,
            secret=None,
            children=(
                Desired(
                    Kind.CLIENT,
                    ("calendar", "ci"),
                    {"name": "ci", "scopes": ["read"]},
                    protect=False,
                    adopt=False,
                    secret=SecretRef(sink="vault", key="k"),
                ),
                Desired(
                    Kind.CLIENT,
                    ("calendar", "bot"),
                    {"name": "bot"},
                    protect=False,
                    adopt=True,
                    secret=SecretRef(),
                ),
            ),
        ),
        Desired(Kind.SERVER, ("docs",), {"name": "docs"}, protect=False, adopt=True, secret=None),
    )
    assert desired_paths(desired_objects(manifest)) == [
        (Kind.SERVER, ("calendar",)),
        (Kind.CLIENT, ("calendar", "ci")),
        (Kind.CLIENT, ("calendar", "bot")),
        (Kind.SERVER, ("docs",)),
    ]


def test_no_manifest_only_or_read_only_setting_is_ever_sent() -> None:
    client = StandaloneClientSpec(
        kind="MCPServerClient",
        server="calendar",
        name="ci",
        scopes=("read",),
        protect=True,
        adopt=True,
        secret=SecretRef(sink="vault", key="k", rotation=1),
    )
    server = ServerSpec(
        kind="MCPServer",
        name="calendar",
        description="d",
        protect=True,
        adopt=True,
        surface="resources",
        clients=(client,),
    )
    # The manifest states every manifest-only setting, so that leaving one in would be seen.
    assert set(server.mentioned()) >= SERVER.manifest_only
    assert set(client.mentioned()) >= CLIENT.manifest_only

    objects = list(_walk(desired_objects(Manifest(project=PROJECT, servers=(server,), locations={}))))

    assert [(obj.kind, sorted(obj.fields)) for obj in objects] == [
        (Kind.SERVER, ["description", "name"]),
        (Kind.CLIENT, ["name", "scopes"]),
    ]
    for obj in objects:
        never = KINDS[obj.kind].manifest_only | KINDS[obj.kind].read_only
        assert not set(obj.fields) & never, (obj.path, sorted(set(obj.fields) & never))


# ---- live objects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registration", "expected"),
    [("", None), ("preRegistered", None), (None, None), ("dcr", "dcr"), ("cimd", "cimd")],
)
def test_registered_elsewhere(registration: str | None, expected: str | None) -> None:
    client = LiveClient.from_wire({"id": "C1", "name": "ci", "registrationType": registration}, "S1")

    assert registered_elsewhere(client) == expected


def test_an_object_without_a_registration_type_is_not_registered_elsewhere() -> None:
    assert registered_elsewhere(LiveClient.from_wire({"id": "C1", "name": "ci"}, "S1")) is None
    assert registered_elsewhere(LiveServer.from_wire({"id": "S1", "name": "calendar"})) is None


def test_live_objects_walks_the_servers_and_the_clients_of_each() -> None:
    calendar = LiveServer.from_wire({"id": "S1", "name": "calendar"})
    docs = LiveServer.from_wire({"id": "S2", "name": "docs"})
    empty = LiveServer.from_wire({"id": "S3", "name": "empty"})
    ci = LiveClient.from_wire({"id": "C1", "name": "ci"}, "S1")
    bot = LiveClient.from_wire({"id": "C2", "name": "bot"}, "S1")
    web = LiveClient.from_wire({"id": "C3", "name": "web"}, "S2")
    orphan = LiveClient.from_wire({"id": "C9", "name": "orphan"}, "S9")  # of a server not listed
    live = LiveState(
        servers=(calendar, docs, empty), clients={"S9": (orphan,), "S2": (web,), "S1": (ci, bot)}
    )

    assert [(kind, path, obj.id) for kind, path, obj in live_objects(live)] == [
        (Kind.SERVER, ("calendar",), "S1"),
        (Kind.CLIENT, ("calendar", "ci"), "C1"),
        (Kind.CLIENT, ("calendar", "bot"), "C2"),
        (Kind.SERVER, ("docs",), "S2"),
        (Kind.CLIENT, ("docs", "web"), "C3"),
        (Kind.SERVER, ("empty",), "S3"),
    ]
    assert live_objects(LiveState(servers=())) == []
