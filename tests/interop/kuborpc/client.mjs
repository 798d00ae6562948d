// kubo-rpc-client against our RPC: add a file and a folder, cat with offset/length, ls,
// pin add/ls/rm, block put/get/stat, dag put/get (dag-cbor); with a second daemon's URL,
// pubsub: a subscription there gets what this daemon publishes and what it publishes itself
// (topics multibase-encoded on the wire by the client, as Kubo takes them). Prints one JSON
// document.
import { create } from 'kubo-rpc-client'

const [url, dir, otherUrl] = process.argv.slice(2)
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
out.gc = []
for await (const r of ipfs.repo.gc()) {
  if (r.err) throw r.err
  out.gc.push(r.cid.toString())
}
const blockCid = await ipfs.block.put(new TextEncoder().encode('a block'))
out.block = { cid: blockCid.toString(),
  got: new TextDecoder().decode(await ipfs.block.get(blockCid)),
  size: (await ipfs.block.stat(blockCid)).size }
const dagCid = await ipfs.dag.put({ hello: 'world', link: blockCid }, { storeCodec: 'dag-cbor' })
const got = await ipfs.dag.get(dagCid)
out.dag = { cid: dagCid.toString(), hello: got.value.hello, link: got.value.link.toString() }

if (otherUrl) out.pubsub = await pubsub(ipfs, create({ url: otherUrl }))
console.log(JSON.stringify(out))

async function pubsub (a, b) {
  const topic = 'kubo-rpc/topic with spaces & ünïcode'
  const got = []
  const controller = new AbortController()
  await b.pubsub.subscribe(topic, m => got.push(m), { signal: controller.signal })
  const bId = (await b.id()).id.toString()
  const until = async (what, check) => {
    for (const end = Date.now() + 30000; Date.now() < end;) {
      if (await check()) return
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new Error(`pubsub: timed out waiting for ${what}`)
  }
  await until('the subscriber in the mesh',
    async () => (await a.pubsub.peers(topic)).map(String).includes(bId))
  const topics = await b.pubsub.ls()
  await a.pubsub.publish(topic, new TextEncoder().encode('from a'))
  await b.pubsub.publish(topic, new TextEncoder().encode('from b'))
  await until('both messages', async () => got.length >= 2)
  controller.abort()
  const aId = (await a.id()).id.toString()
  return {
    topics,
    messages: got.map(m => ({ from: m.from.toString(), data: new TextDecoder().decode(m.data),
      topic: m.topic, seqno: m.sequenceNumber != null })),
    aId,
    bId
  }
}
