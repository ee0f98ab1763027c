import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { redactConfig } from "../../src/config/redact.js";
import { classifySftpError, looksFull, sftpFault, sftpReply } from "../../src/sftp/classify.js";
import { fingerprint, knownHostsAccepts, pinnedAccepts } from "../../src/sftp/hostkey.js";
import { parseSftpUrl } from "../../src/sftp/options.js";
import { remoteNames } from "../../src/sftp/upload.js";

const PIN = `SHA256:${"A".repeat(43)}`;

function configError(sub: string): string {
  try {
    loadConfig(`subscriptions:\n  - name: a\n    subjects: [stock.full]\n${sub}`, {});
  } catch (err) {
    return (err as Error).message;
  }
  return "";
}

describe("sftp:// config", () => {
  it("accepts a URL with a user and a block with a pinned host key and a key", () => {
    const { config } = loadConfig(
      `subscriptions:\n  - name: a\n    subjects: [stock.full]\n    url: "sftp://stock@files.example.com:2222/in"\n    sftp: { host_key: "${PIN}", private_key: "KEY", marker: ".done" }\n`,
      {},
    );
    expect(config.subscriptions[0]!.sftp).toMatchObject({
      host_key: [PIN],
      temp_prefix: ".",
      temp_suffix: ".tmp",
      marker: ".done",
      mkdir: false,
    });
  });

  it.each([
    [
      '    url: "sftp://stock@h/in"\n    sftp: { private_key: "K" }\n',
      "subscriptions[0].sftp.host_key: required",
    ],
    ['    url: "sftp://stock@h/in"\n', "subscriptions[0].sftp: required for sftp:// URLs"],
    [
      '    url: "sftp://stock@h/in"\n    sftp: { host_key: "md5:aa", private_key: "K" }\n',
      "subscriptions[0].sftp.host_key[0]: expected a fingerprint",
    ],
    [
      `    url: "sftp://stock@h/in"\n    sftp: { host_key: "${PIN}" }\n`,
      "subscriptions[0].sftp: expected private_key, private_key_file or password",
    ],
    [
      `    url: "sftp://stock:pw@h/in"\n    sftp: { host_key: "${PIN}", password: "x" }\n`,
      "subscriptions[0].url: expected no password in the URL",
    ],
    [
      `    url: "sftp://h/in"\n    sftp: { host_key: "${PIN}", password: "x" }\n`,
      "subscriptions[0].url: expected sftp:// then user@host",
    ],
    [
      `    url: "https://h/in"\n    sftp: { host_key: "${PIN}", password: "x" }\n`,
      "subscriptions[0].sftp: only for sftp:// URLs",
    ],
    [
      `    url: "sftp://u@h/in"\n    sftp: { host_key: "${PIN}", password: "x", hostkey: "y" }\n`,
      "subscriptions[0].sftp",
    ],
  ])("refuses %j with a message naming the field", (sub, message) => {
    expect(configError(sub)).toContain(message);
  });

  it("known_hosts may stand in for host_key; several host keys (a rotation) are a list", () => {
    const ok = (sftp: string) =>
      loadConfig(
        `subscriptions:\n  - name: a\n    subjects: [x]\n    url: "sftp://u@h/in"\n    sftp: ${sftp}\n`,
        {},
      );
    expect(() => ok('{ known_hosts: /etc/ssh/ssh_known_hosts, password: "x" }')).not.toThrow();
    expect(
      ok(`{ host_key: ["${PIN}", "SHA256:${"B".repeat(43)}"], password: "x" }`).config.subscriptions[0]!.sftp!
        .host_key,
    ).toHaveLength(2);
  });

  it("config check prints no key, passphrase or password", () => {
    const { config } = loadConfig(
      `subscriptions:\n  - name: a\n    subjects: [x]\n    url: "sftp://u@h/in"\n    sftp: { host_key: "${PIN}", private_key: "-----BEGIN OPENSSH PRIVATE KEY-----abc", passphrase: "pp", password: "pw" }\n`,
      {},
    );
    const printed = JSON.stringify(redactConfig(config));
    for (const secret of ["BEGIN OPENSSH", '"pp"', '"pw"']) expect(printed).not.toContain(secret);
    expect(printed).toContain(PIN);
  });

  it("parses the URL's parts; the port defaults to 22", () => {
    expect(parseSftpUrl("sftp://stock@files.example.com:2222/in/stock")).toEqual({
      username: "stock",
      host: "files.example.com",
      port: 2222,
      dir: "/in/stock",
    });
    expect(parseSftpUrl("sftp://a%40b@[::1]/x%20y")).toEqual({
      username: "a@b",
      host: "::1",
      port: 22,
      dir: "/x y",
    });
  });
});

describe("sftp remote names", () => {
  it("a dot-prefixed .tmp name that is the same at every attempt, and an optional marker", () => {
    const opts = { temp_prefix: ".", temp_suffix: ".tmp", marker: ".done" };
    expect(remoteNames("/in", "000001-full-part-0001-of-0002.csv.gz", opts)).toEqual({
      temp: "/in/.000001-full-part-0001-of-0002.csv.gz.tmp",
      final: "/in/000001-full-part-0001-of-0002.csv.gz",
      marker: "/in/000001-full-part-0001-of-0002.csv.gz.done",
    });
    expect(remoteNames("/in/", "a.csv", { ...opts, temp_prefix: "_", marker: null })).toEqual({
      temp: "/in/_a.csv.tmp",
      final: "/in/a.csv",
      marker: null,
    });
  });
});

describe("sftp error classes", () => {
  const err = (props: object, message = "x") => Object.assign(new Error(message), props);
  it.each([
    [err({ level: "client-authentication" }), "auth_failed"],
    [sftpFault("host_key_mismatch", "host key"), "host_key_mismatch"],
    [err({ code: "ECONNREFUSED" }), "connection_refused"],
    [err({ level: "client-timeout" }), "timeout"],
    [sftpFault("timeout", "slow"), "timeout"],
    [sftpReply(err({ code: 3 }), "open"), "permission_denied"],
    [sftpReply(err({ code: 2 }), "open"), "no_such_directory"],
    [sftpReply(err({ code: 14 }), "write"), "disk_full"],
    [sftpReply(err({ code: 4 }, "No space left on device"), "write"), "disk_full"],
    [sftpReply(err({ code: 4 }, "Failure"), "write"), "sftp"],
    // an SSH disconnect has a numeric code too: not an SFTP reply
    [err({ code: 2 }, "Protocol error"), "sftp"],
    [err({ code: "ECONNRESET" }), "network"],
    // ssh2's own error for a request whose connection went away: not a reply from the server
    [sftpReply(err({}, "No response from server"), "write"), "network"],
  ])("%s → %s", (e, cls) => {
    expect(classifySftpError(e).errorClass).toBe(cls);
  });

  it("a full disk is fewer free bytes than the file needs", () => {
    expect(looksFull({ bavail: 1, frsize: 4096 }, 10_000)).toBe(true);
    expect(looksFull({ bavail: 100, frsize: 4096 }, 10_000)).toBe(false);
    expect(looksFull(null, 10_000)).toBe(false);
  });
});

describe("sftp host keys", () => {
  const blob = Buffer.from("ssh-ed25519 key blob");
  const fp = `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
  const b64 = blob.toString("base64");

  it("fingerprints as ssh-keygen -lf, with or without the trailing =", () => {
    expect(fingerprint(blob)).toBe(fp);
    expect(pinnedAccepts([PIN, `${fp}=`], blob)).toBe(true);
    expect(pinnedAccepts([PIN], blob)).toBe(false);
  });

  it("reads known_hosts: plain, [host]:port, patterns, hashed, @revoked", () => {
    expect(knownHostsAccepts(`files.example.com ssh-ed25519 ${b64}\n`, "files.example.com", 22, blob)).toBe(
      true,
    );
    expect(knownHostsAccepts(`files.example.com ssh-ed25519 ${b64}\n`, "files.example.com", 2222, blob)).toBe(
      false,
    );
    expect(
      knownHostsAccepts(`[files.example.com]:2222 ssh-ed25519 ${b64}\n`, "files.example.com", 2222, blob),
    ).toBe(true);
    expect(
      knownHostsAccepts(`*.example.com,!bad.example.com ssh-ed25519 ${b64}\n`, "files.example.com", 22, blob),
    ).toBe(true);
    expect(
      knownHostsAccepts(`*.example.com,!bad.example.com ssh-ed25519 ${b64}\n`, "bad.example.com", 22, blob),
    ).toBe(false);
    const salt = Buffer.from("salt-salt-salt-salt!");
    const hash = createHmac("sha1", salt).update("files.example.com").digest("base64");
    expect(
      knownHostsAccepts(
        `|1|${salt.toString("base64")}|${hash} ssh-ed25519 ${b64}\n`,
        "files.example.com",
        22,
        blob,
      ),
    ).toBe(true);
    expect(
      knownHostsAccepts(
        `files.example.com ssh-ed25519 ${Buffer.from("other").toString("base64")}\n`,
        "files.example.com",
        22,
        blob,
      ),
    ).toBe(false);
    const revoked = `files.example.com ssh-ed25519 ${b64}\n@revoked * ssh-ed25519 ${b64}\n`;
    expect(knownHostsAccepts(revoked, "files.example.com", 22, blob)).toBe(false);
  });
});
