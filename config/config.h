// The typed configuration: plain structs, one per YAML section, every field holding its default
// until the loader (config/loader.h) overwrites it. docs/configuration.md describes each key.
// Values are effective values: per-tenant limits and per-mailbox server overrides are already
// merged over the microsoft365 defaults, relative file names already resolved.
// Structs are copyable values; a reload builds a new Config and swaps it in.
#pragma once

#include "base/log.h"
#include "base/secret.h"
#include "config/cidr.h"
#include "config/source_map.h"
#include "config/values.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::config {

enum class TlsMode { kImplicit, kStarttls, kNone };
enum class StorageBackend { kSqlite, kRedis };
enum class Role { kAdmin, kOperator, kSubmitter, kConnector, kReader };
enum class Access { kImap, kGraph, kCustom };
enum class AuthMethod { kAppPassword, kOauth2 };
enum class SyncMode { kTwoWay, kOneWay, kNone };
enum class OnDisconnect { kHold, kFallback };

// The YAML spellings ("starttls", "app_password", ...).
[[nodiscard]] std::string_view toString(TlsMode v);
[[nodiscard]] std::string_view toString(StorageBackend v);
[[nodiscard]] std::string_view toString(Role v);
[[nodiscard]] std::string_view toString(Access v);
[[nodiscard]] std::string_view toString(AuthMethod v);
[[nodiscard]] std::string_view toString(SyncMode v);
[[nodiscard]] std::string_view toString(OnDisconnect v);

struct NodeConfig {
  std::string id;                 // default: the host name
  std::string data_dir = "./var"; // relative to the working directory, as written
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
};

// A certificate chain and its private key, PEM files; paths resolved against the config's folder.
struct TlsFiles {
  std::string cert;
  std::string key;
};

struct SmtpListener {
  Endpoint address{"127.0.0.1", 2525};
  std::optional<TlsFiles> tls; // set: STARTTLS is offered
  bool require_tls = false;    // default: true when tls is set, else false
  std::uint64_t max_message_bytes = 36700160;
  std::uint32_t max_recipients = 1000;
  std::uint32_t max_connections = 10000;
  std::vector<Cidr> trusted_networks;
  std::string trusted_as; // token name whose roles/tenants trusted connections get
  Duration idle_timeout = std::chrono::minutes(5);    // waiting for the next command
  Duration command_timeout = std::chrono::minutes(1); // from a command's first byte to its CRLF
  Duration data_timeout = std::chrono::minutes(10);   // from 354 to the final "."
  std::uint32_t max_line_length = 4096;               // bytes, CRLF included
  std::uint32_t max_auth_failures = 3;                // then 421 and close
};

struct ApiToken {
  std::string name;
  Secret secret;
  std::vector<Role> roles;
  std::vector<std::string> tenants{"*"}; // "*" alone: every tenant

  [[nodiscard]] bool allTenants() const { return tenants.size() == 1 && tenants.front() == "*"; }
  [[nodiscard]] bool hasRole(Role r) const;
};

struct ApiListener {
  Endpoint address{"127.0.0.1", 8025};
  std::optional<TlsFiles> tls; // set: h2 over TLS (ALPN); unset: h2c prior knowledge + HTTP/1.1
  std::vector<ApiToken> tokens;
};

struct Listeners {
  SmtpListener smtp;
  ApiListener api;
};

struct StorageConfig {
  StorageBackend backend = StorageBackend::kSqlite;
  std::optional<Secret> redis_url; // storage.redis.url; may carry a password, hence a Secret
};

struct EgressConfig {
  std::string bind_address; // IP literal; empty: let the kernel choose
};

// Where an upstream SMTP or IMAP server is and how to trust it.
struct Upstream {
  std::string host;
  std::uint16_t port = 0;
  TlsMode tls = TlsMode::kStarttls;
  bool allow_self_signed = false; // accept a self-signed server certificate (explicit opt-in)
  std::string ca_file;            // extra trust anchors, PEM; resolved path; empty: system store
  std::vector<std::string> pins;  // SHA-256 of the server certificate's DER, lower-case hex
};

struct Microsoft365Limits {
  std::uint32_t recipients_per_day = 10000; // over a rolling window of window_seconds
  std::uint32_t messages_per_minute = 30;
  std::uint32_t recipients_per_message = 500;
  std::uint32_t max_connections = 3;  // SMTP connections per mailbox
  std::chrono::seconds window{86400}; // window_seconds
};

struct Microsoft365 {
  Upstream smtp{"smtp.office365.com", 587, TlsMode::kStarttls, false, {}, {}};
  Upstream imap{"outlook.office365.com", 993, TlsMode::kImplicit, false, {}, {}};
  // "{tenant}" is replaced by the tenant's oauth.tenant_id.
  std::string token_endpoint = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token";
  std::string graph_endpoint = "https://graph.microsoft.com/v1.0";
  Microsoft365Limits limits;
  // Login retries of a disconnected mailbox route: the first after login_retry_initial, doubling
  // up to login_retry_max. Bad credentials (a new App Password can take hours to start working)
  // retry 5 times slower, up to twice the maximum. docs/routing.md.
  Duration login_retry_initial = std::chrono::minutes(1);
  Duration login_retry_max = std::chrono::hours(1);
};

struct RelayAuth {
  std::string username;
  Secret password;
};

// Unset optionals mean "no limit of that kind".
struct RelayLimits {
  std::optional<std::uint32_t> messages_per_minute;
  std::optional<std::uint32_t> recipients_per_day; // over window_seconds
  std::optional<std::uint32_t> recipients_per_message;
  std::optional<std::uint64_t> max_message_bytes;
  std::uint32_t max_connections = 10;
  std::chrono::seconds window{86400};
};

struct Relay {
  std::string name; // the key under relays:
  Upstream server;  // host, port, tls, allow_self_signed, ca_file, pins
  std::optional<RelayAuth> auth;
  RelayLimits limits;
};

struct Webhook {
  std::string url;
  Secret secret;                         // HMAC-SHA256 key
  std::vector<std::string> events{"*"};  // event types, or "*" alone
  std::vector<std::string> tenants{"*"}; // tenant ids, or "*" alone
};

struct TenantOauth {
  std::string tenant_id; // Entra ID directory (GUID or domain); fills {tenant} in token_endpoint
  std::string client_id;
  Secret client_secret;
};

struct MailboxAuth {
  AuthMethod method = AuthMethod::kAppPassword;
  std::optional<Secret> password;      // app_password
  std::optional<Secret> refresh_token; // oauth2
};

struct Mailbox {
  std::string address;              // as written; compare with lowerAscii()
  std::vector<std::string> aliases; // extra From addresses
  Access access = Access::kImap;
  std::optional<MailboxAuth> auth;     // unset: not connected until connected through the API
  Upstream smtp;                       // effective: microsoft365.smtp with this mailbox's overrides
  Upstream imap;                       // effective: microsoft365.imap with this mailbox's overrides
  std::uint32_t imap_max_sessions = 3; // imap.pool.max_sessions
  // imap.sent_folder: the Sent folder's name (UTF-8) when neither its \Sent flag nor a known
  // localized name finds it; empty: none configured.
  std::string imap_sent_folder;
  // imap.sync_folders: further folders (UTF-8 names) synced as incoming mail with sync: two_way.
  std::vector<std::string> imap_sync_folders;
  SyncMode sync = SyncMode::kTwoWay; // default one_way for access: graph
  // Not a file key: set when the mailbox was disconnected through the API (the daemon lays the
  // stored connections over the file). Its mail waits whatever on_disconnect says.
  bool held = false;
};

struct Tenant {
  std::string id;
  std::optional<TenantOauth> oauth;
  Microsoft365Limits limits;         // effective: microsoft365.limits with this tenant's overrides
  std::vector<std::string> fallback; // relay names, tried in order
  std::uint32_t priority_reserve_percent = 10;
  OnDisconnect on_disconnect = OnDisconnect::kHold;
  std::string bcc_address; // empty: none
  // imap.max_sessions: IMAP sessions open at once across all of the tenant's mailboxes (each
  // mailbox still at most its own imap_max_sessions); unset: no tenant-wide cap.
  std::optional<std::uint32_t> imap_max_sessions;
  std::vector<Mailbox> mailboxes;
};

// Outbound delivery knobs (the durable queue and its connections).
struct QueueConfig {
  Duration retry_initial = std::chrono::minutes(5); // first retry delay; doubles per attempt
  Duration retry_max = std::chrono::hours(1);       // cap on the retry delay
  Duration lifetime = std::chrono::hours(24 * 5);   // then the message bounces (an event)
  std::uint32_t messages_per_connection = 100;      // then the upstream connection is renewed
  std::uint32_t commit_batch_max = 512;             // messages sharing one durable commit
};

struct Config {
  NodeConfig node;
  LogConfig log;
  Listeners listeners;
  StorageConfig storage;
  EgressConfig egress;
  Microsoft365 microsoft365;
  std::map<std::string, Relay> relays; // by name
  std::vector<Webhook> webhooks;
  std::vector<Tenant> tenants;
  QueueConfig queue;

  // Where each key came from (file, line, column); empty for a Config built in code.
  SourceMap source;

  [[nodiscard]] const Relay* findRelay(std::string_view name) const;
  [[nodiscard]] const Tenant* findTenant(std::string_view id) const;
  [[nodiscard]] const ApiToken* findToken(std::string_view name) const;
};

} // namespace mailgate::config
