// kubo-rpc-client against our RPC: add a file and a folder, cat with offset/length, ls,
// pin add/ls/rm, block put/get/stat, dag put/get (dag-cbor). Prints one JSON document.
import { create } from 'kubo-rpc-client'

const [url, dir] = process.argv.slice(2)
const ipfs = create({ url })
const out = {}
const bytes = new Uint8Array(300000).map((_, i) => (i * 7) % 251)
const one = await ipfs.add(bytes, { cidVersion: 1 })
out.file = { cid: one.cid.toString(), path: one.path, size: one.size }
const tree = []
for await (const r of ipfs.addAll([
  { path: 'tree/a.txt', content: new TextEncoder().encode('hello\n') },
  { path: 'tree/sub/b.bin', content: bytes.slice(0, 1000) }
], { wrapWithDirectory: false })) tree.push({ path: r.path, cid: r.cid.toString() })
out.tree = tree
const chunks = []
for await (const c of ipfs.cat(one.cid, { offset: 1000, length: 2000 })) chunks.push(c)
const catBytes = Buffer.concat(chunks)
out.catOk = catBytes.equals(Buffer.from(bytes.slice(1000, 3000)))
const root = tree.find(t => t.path === 'tree').cid
const names = []
for await (const e of ipfs.ls(root)) names.push(e.name)
out.ls = names.sort()
const pinned = await ipfs.pin.add(one.cid)
const pins = []
for await (const p of ipfs.pin.ls({ type: 'recursive' })) pins.push(p.cid.toString())
out.pinned = pins.includes(pinned.toString())
await ipfs.pin.rm(one.cid)
const after = []
for await (const p of ipfs.pin.ls({ type: 'recursive' })) after.push(p.cid.toString())
out.unpinned = !after.includes(one.cid.toString())
const blockCid = await ipfs.block.put(new TextEncoder().encode('a block'))
out.block = { cid: blockCid.toString(),
  got: new TextDecoder().decode(await ipfs.block.get(blockCid)),
  size: (await ipfs.block.stat(blockCid)).size }
const dagCid = await ipfs.dag.put({ hello: 'world', link: blockCid }, { storeCodec: 'dag-cbor' })
const got = await ipfs.dag.get(dagCid)
out.dag = { cid: dagCid.toString(), hello: got.value.hello, link: got.value.link.toString() }
console.log(JSON.stringify(out))
