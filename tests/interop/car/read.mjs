// Reads a CAR with @ipld/car and prints {version, roots, blocks: [cid...]} as JSON;
// every block is checked against its CID with the multiformats hashers, as clients do.
import { readFile } from 'node:fs/promises'
import { CarReader } from '@ipld/car'
import { sha256 } from 'multiformats/hashes/sha2'

const reader = await CarReader.fromBytes(await readFile(process.argv[2]))
const blocks = []
for await (const { cid, bytes } of reader.blocks()) {
  const digest = await sha256.digest(bytes)
  if (cid.multihash.code === sha256.code &&
      Buffer.compare(Buffer.from(digest.bytes), Buffer.from(cid.multihash.bytes)) !== 0) {
    throw new Error(`block ${cid} does not match its CID`)
  }
  blocks.push(cid.toString())
}
const roots = (await reader.getRoots()).map((c) => c.toString())
console.log(JSON.stringify({ version: reader.version, roots, blocks }))
