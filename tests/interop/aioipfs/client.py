"""aioipfs 0.7.1 against our Kubo RPC on TCP: add a file and a folder, cat with offset/length,
ls, pin add/ls/rm, block put/get/stat, dag put/get (DAG-CBOR). Prints one JSON document.

Runs in the scratch venv made by tests/interop/test_aioipfs.py (aioipfs pins aiohttp 3.9.5),
so it imports nothing of ours. Usage: client.py HOST PORT WORKDIR
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aioipfs


async def main(host: str, port: int, work: Path) -> dict[str, Any]:
    data = bytes((i * 7) % 251 for i in range(300000))
    out: dict[str, Any] = {}
    client = aioipfs.AsyncIPFS(host=host, port=port)
    try:
        one = await client.core.add_bytes(data, cid_version=1)
        out["file"] = {"cid": one["Hash"], "name": one["Name"], "size": one["Size"]}
        tree = work / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "a.txt").write_bytes(b"hello\n")
        (tree / "sub" / "b.bin").write_bytes(data[:1000])
        added = [e async for e in client.core.add(str(tree), cid_version=1)]
        out["tree"] = [{"name": e["Name"], "cid": e["Hash"]} for e in added]
        piece = await client.core.cat(one["Hash"], offset=1000, length=2000)
        out["catOk"] = piece == data[1000:3000]
        root = next(e["Hash"] for e in added if e["Name"] == "tree")
        listing = await client.core.ls(root)
        out["ls"] = sorted(link["Name"] for obj in listing["Objects"] for link in obj["Links"])
        pinned = [p async for p in client.pin.add(one["Hash"])]
        pins = await client.pin.ls(pintype="recursive")
        out["pinned"] = one["Hash"] in pins["Keys"] and one["Hash"] in pinned[-1]["Pins"]
        await client.pin.rm(one["Hash"])
        after = await client.pin.ls(pintype="recursive")
        out["unpinned"] = one["Hash"] not in after["Keys"]
        removed = [e async for e in client.repo.gc()]  # Kubo's: every unpinned block goes
        out["gc"] = [e["Key"]["/"] for e in removed]
        try:
            await client.block.stat(one["Hash"])
            out["goneAfterGc"] = False
        except aioipfs.APIError:
            out["goneAfterGc"] = True
        tree_root = next(e["Hash"] for e in added if e["Name"] == "tree")
        out["treeKept"] = (await client.block.stat(tree_root))["Key"] == tree_root
        block_file = work / "block.bin"
        block_file.write_bytes(b"a block")
        put = await client.block.put(str(block_file), cid_codec="raw")
        stat = await client.block.stat(put["Key"])
        got = await client.block.get(put["Key"])
        out["block"] = {"cid": put["Key"], "got": got.decode(), "size": stat["Size"]}
        node = work / "node.json"
        node.write_text(json.dumps({"hello": "world", "link": {"/": put["Key"]}}))
        dag = await client.dag.put(str(node), store_codec="dag-cbor", input_codec="dag-json")
        dag_cid = dag["Cid"]["/"]
        value = json.loads(await client.dag.get(dag_cid))
        out["dag"] = {"cid": dag_cid, "hello": value["hello"], "link": value["link"]["/"]}
    finally:
        await client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))))
