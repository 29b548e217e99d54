import assert from "node:assert/strict";
import { close } from "./socket.ts";
import { sdNotify, unixSockaddr } from "./sd_notify.ts";
import { notifyListener } from "./_test_util.ts";

Deno.test("sdNotify() sends one datagram to $NOTIFY_SOCKET (a path or @abstract); unset: false", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/notify`;
  const l = notifyListener(path);
  const abstractName = `@vpn-router-test-${Deno.pid}`;
  const a = notifyListener(abstractName);
  try {
    assert.equal(sdNotify("READY=1\nMAINPID=42", path), true);
    assert.equal(l.next(), "READY=1\nMAINPID=42");
    assert.equal(l.next(), null, "one datagram");
    assert.equal(sdNotify("STATUS=x", abstractName), true);
    assert.equal(a.next(), "STATUS=x");
    assert.equal(sdNotify("READY=1", ""), false);
    assert.equal(sdNotify("READY=1", undefined), false);
    assert.throws(() => sdNotify("READY=1", `${dir}/nobody`), /NOTIFY_SOCKET .*nobody: connect/);
    assert.throws(() => unixSockaddr("/" + "x".repeat(120)), /longer than 107 bytes/);
  } finally {
    close(l.fd);
    close(a.fd);
    await Deno.remove(dir, { recursive: true });
  }
});
