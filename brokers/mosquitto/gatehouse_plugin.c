/*
 * gatehouse-mosquitto: a Mosquitto 2.x plugin (plugin API v5) that asks
 * Gatehouse for every CONNECT and caches its topic decisions, invalidated
 * by Gatehouse's event stream; it also kicks revoked devices' sessions.
 *
 * Protocol (v1): POST /hooks/v1/authorize, GET /hooks/v1/events (server-sent
 * events), POST /hooks/v1/kicks/ack — see the README, "Mosquitto
 * (first-party plugin)".
 *
 * Threads. Mosquitto is single-threaded and its broker API is not
 * thread-safe, so everything that touches the broker (callbacks, kicks,
 * the decision cache, logging) runs on the broker's main thread. Two
 * threads of our own only do HTTP: the stream thread holds the event
 * stream and queues what it reads; the ack thread posts kick results. The
 * main thread drains the queue on every MOSQ_EVT_TICK (each pass of the
 * broker's loop, at least every 100 ms when idle).
 *
 * Failure. Every error denies: no certificate, Gatehouse unreachable, a
 * timeout, a non-200 answer, a body that is not {"allow": true}. Cached
 * decisions are used only while the stream is live (a heartbeat within
 * max_staleness_ms), so a Gatehouse that went away or went stale stops
 * allowing from the cache too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* Built with -fvisibility=hidden: only the plugin entry points are exported. */
#define EXPORT __attribute__((visibility("default")))

#define LOG_PREFIX "gatehouse: "
/* Mosquitto's delivery check (MOSQ_ACL_READ) is sent as the native dialect's
 * read action: "may this device receive a message on this topic name",
 * decided against the subscribe grants. */
#define READ_ACTION "read"
#define MAX_RESPONSE 4096       /* an authorize answer is {"allow":true} */
#define MAX_SSE_LINE 65536      /* one event line; longer drops the stream */
#define MAX_QUEUE 100000        /* queued events; overflow becomes one reset */
#define DEFAULT_STALENESS_MS 30000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* After Gatehouse did not answer, decisions are denied without asking for
 * this long: a Gatehouse that times out must not stall the broker's single
 * thread for timeout_ms on every CONNECT and PUBLISH. */
#define RETRY_AFTER_MS 500

/* ------------------------------------------------------------------------
 * Options */

struct config {
	char *url;        /* hooks base URL, no trailing slash */
	char *secret;     /* never logged */
	char *cafile, *certfile, *keyfile;
	char *broker;     /* broker name in the event stream and acks */
	long timeout_ms;
	size_t cache_size;
};

/* ------------------------------------------------------------------------
 * Queue from the stream thread to the main thread */

enum ev_kind { EV_RESET, EV_DEVICE, EV_KICK, EV_LOG };

struct event {
	enum ev_kind kind;
	char *a, *b; /* device; kick: id, device; log: message */
	int level;
	struct event *next;
};

/* Kick results from the main thread to the ack thread. */
struct ack {
	char *id, *error;
	bool ok;
	int sessions;
	struct ack *next;
};

/* ------------------------------------------------------------------------
 * Decision cache (main thread only) */

struct entry {
	struct entry *next;
	uint64_t hash;
	char *device; /* the username: drop per device */
	bool allow;
	size_t keylen;
	char key[]; /* device \0 client id \0 access qos retain \0 topic */
};

struct cache {
	struct entry **buckets;
	size_t nbuckets, count, cap, sweep;
};

/* ------------------------------------------------------------------------
 * Plugin state: one instance per broker. */

static struct {
	mosquitto_plugin_id_t *pid;
	struct config cfg;
	struct curl_slist *headers;
	CURL *http; /* main thread: keep-alive handle for decisions */
	struct cache cache;

	/* Read by the main thread on every ACL check without taking mu (the
	 * cached path takes no lock); written under mu. live_until_ms is the
	 * end of the stream's liveness (last heartbeat + staleness; 0: not
	 * live); q_len and epoch are mirrored from below. */
	long long live_until_ms;
	size_t q_len_atomic;
	unsigned long epoch_atomic;

	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cond;
	bool stop;
	struct event *q_head, *q_tail;
	size_t q_len;
	struct ack *acks;
	long long last_event_ms;  /* last heartbeat; 0: none since the stream (re)connected */
	long long staleness_ms;   /* from hello */
	bool connected;
	unsigned long epoch;      /* hellos so far: each starts a new cache */

	pthread_t stream_thread, ack_thread;
	bool threads_started;

	/* Main thread: last logged states, so each change is logged once. */
	bool was_live, was_unreachable;
	unsigned long cache_epoch; /* the stream connection the cache belongs to */
	long long retry_at_ms;     /* Gatehouse did not answer: not asked again before */
	long bad_status;           /* last non-200 status logged; 0 after a 200 */
} g;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ------------------------------------------------------------------------
 * Queue helpers (any thread; take g.mu) */

static void free_event(struct event *e)
{
	if (!e) return;
	free(e->a);
	free(e->b);
	free(e);
}

static void clear_queue_locked(void)
{
	struct event *e = g.q_head;
	while (e) {
		struct event *n = e->next;
		free_event(e);
		e = n;
	}
	g.q_head = g.q_tail = NULL;
	g.q_len = 0;
	__atomic_store_n(&g.q_len_atomic, 0, __ATOMIC_RELEASE);
}

static void push_locked(struct event *e)
{
	if (g.q_len >= MAX_QUEUE) {
		/* The main thread fell far behind: what it missed becomes one
		 * reset, which drops every cached decision. Kicks in the
		 * dropped part are not acked; Gatehouse retries them. */
		clear_queue_locked();
		e->kind = EV_RESET;
	}
	e->next = NULL;
	if (g.q_tail) g.q_tail->next = e;
	else g.q_head = e;
	g.q_tail = e;
	g.q_len++;
	__atomic_store_n(&g.q_len_atomic, g.q_len, __ATOMIC_RELEASE);
}

static void enqueue(enum ev_kind kind, const char *a, const char *b, int level)
{
	struct event *e = calloc(1, sizeof(*e));
	if (!e) return;
	e->kind = kind;
	e->level = level;
	e->a = xstrdup(a);
	e->b = xstrdup(b);
	if ((a && !e->a) || (b && !e->b)) {
		free_event(e);
		return;
	}
	pthread_mutex_lock(&g.mu);
	push_locked(e);
	pthread_mutex_unlock(&g.mu);
}

/* qlog hands a log line to the main thread: mosquitto_log_printf is not
 * safe to call from our threads. */
static void qlog(int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	enqueue(EV_LOG, buf, NULL, level);
}

/* ------------------------------------------------------------------------
 * Decision cache */

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static int cache_init(struct cache *c, size_t cap)
{
	size_t n = 1;
	while (n < cap) n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (!c->buckets) return -1;
	c->nbuckets = n;
	c->cap = cap;
	c->count = 0;
	c->sweep = 0;
	return 0;
}

static void cache_free_bucket(struct cache *c, size_t i)
{
	struct entry *e = c->buckets[i];
	while (e) {
		struct entry *n = e->next;
		free(e->device);
		free(e);
		c->count--;
		e = n;
	}
	c->buckets[i] = NULL;
}

static void cache_clear(struct cache *c)
{
	if (!c->buckets) return;
	for (size_t i = 0; i < c->nbuckets && c->count > 0; i++)
		cache_free_bucket(c, i);
}

static void cache_drop_device(struct cache *c, const char *device)
{
	for (size_t i = 0; i < c->nbuckets && c->count > 0; i++) {
		struct entry **pp = &c->buckets[i];
		while (*pp) {
			struct entry *e = *pp;
			if (strcmp(e->device, device) == 0) {
				*pp = e->next;
				free(e->device);
				free(e);
				c->count--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static struct entry *cache_get(struct cache *c, const char *key, size_t keylen, uint64_t h)
{
	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
		if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			return e;
	return NULL;
}

static void cache_put(struct cache *c, const char *key, size_t keylen, uint64_t h, const char *device, bool allow)
{
	if (c->cap == 0) return;
	/* Full: free whole buckets, moving round the table, until there is
	 * room. Bounded memory without the bookkeeping of an LRU list. */
	while (c->count >= c->cap) {
		cache_free_bucket(c, c->sweep);
		c->sweep = (c->sweep + 1) & (c->nbuckets - 1);
	}
	struct entry *e = malloc(sizeof(*e) + keylen);
	if (!e) return;
	e->device = strdup(device);
	if (!e->device) {
		free(e);
		return;
	}
	memcpy(e->key, key, keylen);
	e->keylen = keylen;
	e->hash = h;
	e->allow = allow;
	size_t i = h & (c->nbuckets - 1);
	e->next = c->buckets[i];
	c->buckets[i] = e;
	c->count++;
}

/* ------------------------------------------------------------------------
 * HTTP */

struct buf {
	char *p;
	size_t len, cap;
};

static size_t collect(char *data, size_t size, size_t n, void *userp)
{
	struct buf *b = userp;
	size_t len = size * n;
	if (b->len + len + 1 > b->cap) return 0; /* too long: fail the transfer */
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

static void set_tls(CURL *h)
{
	if (g.cfg.cafile) curl_easy_setopt(h, CURLOPT_CAINFO, g.cfg.cafile);
	if (g.cfg.certfile) curl_easy_setopt(h, CURLOPT_SSLCERT, g.cfg.certfile);
	if (g.cfg.keyfile) curl_easy_setopt(h, CURLOPT_SSLKEY, g.cfg.keyfile);
}

static CURL *new_handle(long timeout_ms)
{
	CURL *h = curl_easy_init();
	if (!h) return NULL;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, g.headers);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	long connect_ms = timeout_ms < 1000 ? timeout_ms : 1000;
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	if (timeout_ms > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	set_tls(h);
	return h;
}

/* post sends a JSON body and returns the HTTP status (0: no answer) and
 * the answer in out (NUL-terminated, capped). err gets curl's message. */
static long post(CURL *h, const char *path, const char *body, struct buf *out, char *err)
{
	char url[2048];
	if (snprintf(url, sizeof(url), "%s%s", g.cfg.url, path) >= (int)sizeof(url)) return 0;
	err[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	CURLcode rc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (rc != CURLE_OK) {
		if (!err[0]) snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
		return 0;
	}
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* authorize asks Gatehouse (main thread). It returns 1 allow, 0 deny, -1
 * no usable answer (also a deny); a change between reachable and not is
 * logged once. */
static int authorize(cJSON *req)
{
	if (g.was_unreachable && now_ms() < g.retry_at_ms) return -1;
	char *body = cJSON_PrintUnformatted(req);
	if (!body) return -1;
	char data[MAX_RESPONSE], err[CURL_ERROR_SIZE];
	struct buf out = {data, 0, sizeof(data)};
	data[0] = '\0';
	long status = post(g.http, "/hooks/v1/authorize", body, &out, err);
	free(body);
	if (status == 0) {
		g.retry_at_ms = now_ms() + RETRY_AFTER_MS;
		if (!g.was_unreachable)
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "cannot reach Gatehouse at %s: %s; denying every decision until it answers",
					     g.cfg.url, err);
		g.was_unreachable = true;
		return -1;
	}
	if (g.was_unreachable)
		mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "Gatehouse at %s answers again", g.cfg.url);
	g.was_unreachable = false;
	if (status != 200) {
		/* Once per status (a wrong secret would otherwise log every
		 * decision): 403 is a wrong plugin_opt_secret. */
		if (status != g.bad_status)
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "authorize answered HTTP %ld%s: denying every such decision", status,
					     status == 403 ? " (is plugin_opt_secret Gatehouse's hook secret?)" : "");
		g.bad_status = status;
		return -1;
	}
	if (g.bad_status) mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "authorize answers HTTP 200 again");
	g.bad_status = 0;
	cJSON *resp = cJSON_Parse(data);
	int allow = -1;
	if (resp) {
		cJSON *a = cJSON_GetObjectItemCaseSensitive(resp, "allow");
		if (cJSON_IsBool(a)) allow = cJSON_IsTrue(a) ? 1 : 0;
		cJSON_Delete(resp);
	}
	if (allow < 0) mosquitto_log_printf(MOSQ_LOG_WARNING, LOG_PREFIX "authorize answer is not {\"allow\": bool}: denied");
	return allow;
}

/* ------------------------------------------------------------------------
 * Liveness of the stream (main thread) */

static long long stream_staleness(void)
{
	pthread_mutex_lock(&g.mu);
	long long v = g.staleness_ms;
	pthread_mutex_unlock(&g.mu);
	return v;
}

/* publish_liveness_locked mirrors the stream's state for stream_live (g.mu
 * held). The epoch is stored last: whoever sees it changed sees the rest. */
static void publish_liveness_locked(void)
{
	long long until = g.connected && g.last_event_ms > 0 ? g.last_event_ms + g.staleness_ms : 0;
	__atomic_store_n(&g.live_until_ms, until, __ATOMIC_RELEASE);
	__atomic_store_n(&g.epoch_atomic, g.epoch, __ATOMIC_RELEASE);
}

/* stream_live reports whether the stream is live; *pending, whether events
 * wait for the next tick (then the cache may be behind: not used). It takes
 * no lock: a cached ACL check costs a key, a hash and a bucket walk. Every
 * change that can make cached answers wrong (a device event, a reset, a
 * new stream connection) is queued before it takes effect and only this
 * thread drains the queue, so a non-zero q_len seen here stays non-zero
 * until this thread has applied it. */
static bool stream_live(bool *pending)
{
	unsigned long epoch = __atomic_load_n(&g.epoch_atomic, __ATOMIC_ACQUIRE);
	long long until = __atomic_load_n(&g.live_until_ms, __ATOMIC_ACQUIRE);
	if (pending) *pending = __atomic_load_n(&g.q_len_atomic, __ATOMIC_ACQUIRE) > 0;
	bool live = until > 0 && now_ms() < until;
	if (epoch != g.cache_epoch) {
		/* A new stream connection: events may have been missed in
		 * between, even if this thread never saw the stream down. */
		cache_clear(&g.cache);
		g.cache_epoch = epoch;
	}
	if (live != g.was_live) {
		if (live) {
			mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "event stream live: cached decisions in use");
		} else {
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					     LOG_PREFIX "no event from Gatehouse within %lld ms: cached decisions are not used, "
							"every decision is asked fresh (fail closed)", stream_staleness());
		}
		/* Whatever happened while the stream was not live was missed:
		 * start from an empty cache either way. */
		cache_clear(&g.cache);
		g.was_live = live;
	}
	return live;
}

/* ------------------------------------------------------------------------
 * Certificates */

/* b64_der returns the certificate's DER as base64 (malloc'd, no line
 * breaks), or NULL. Gatehouse hashes these bytes to recognise the device's
 * current certificate without parsing it; PEM would only add armour for it
 * to strip. */
static char *b64_der(X509 *cert)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);
	if (n <= 0) return NULL;
	char *out = malloc(4 * (((size_t)n + 2) / 3) + 1);
	if (out) EVP_EncodeBlock((unsigned char *)out, der, n);
	OPENSSL_free(der);
	return out;
}

/* cert_der_cn returns the client certificate as base64 DER and its subject
 * CN (both malloc'd), or -1. */
static int cert_der_cn(struct mosquitto *client, char **der, char **cn)
{
	*der = *cn = NULL;
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) return -1;
	int rc = -1;
	*der = b64_der(cert);
	X509_NAME *name = X509_get_subject_name(cert);
	int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	/* Exactly one CN: a second one would make "the" CN ambiguous. */
	if (idx >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, idx) < 0) {
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
		if (len > 0 && memchr(utf8, '\0', (size_t)len) == NULL && (*cn = malloc((size_t)len + 1))) {
			memcpy(*cn, utf8, (size_t)len);
			(*cn)[len] = '\0';
		}
		OPENSSL_free(utf8);
	}
	if (*der && *cn) rc = 0;
	else {
		free(*der);
		free(*cn);
		*der = *cn = NULL;
	}
	X509_free(cert);
	return rc;
}

/* ------------------------------------------------------------------------
 * Broker callbacks (main thread) */

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	char *der, *cn;
	if (cert_der_cn(ed->client, &der, &cn) != 0) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "client %s has no usable certificate: denied",
				     client_id ? client_id : "?");
		return MOSQ_ERR_AUTH;
	}
	int allow = -1;
	cJSON *req = cJSON_CreateObject();
	if (req && cJSON_AddStringToObject(req, "action", "connect") &&
	    cJSON_AddStringToObject(req, "client_id", client_id ? client_id : "") &&
	    cJSON_AddStringToObject(req, "identity", cn) &&
	    cJSON_AddStringToObject(req, "certificate_der", der))
		allow = authorize(req);
	cJSON_Delete(req);
	free(der);
	int rc = MOSQ_ERR_AUTH;
	/* The username becomes the device id Gatehouse verified (it checked
	 * that the CN names the device): ACL checks send it as the identity,
	 * whatever username the client sent. */
	if (allow == 1) {
		int urc = mosquitto_set_username(ed->client, cn);
		if (urc == MOSQ_ERR_SUCCESS) rc = MOSQ_ERR_SUCCESS;
		else mosquitto_log_printf(MOSQ_LOG_WARNING, LOG_PREFIX "client %s: cannot set the username to %s: %s",
					  client_id ? client_id : "?", cn, mosquitto_strerror(urc));
	} else {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "client %s (certificate CN %s) refused at CONNECT%s",
				     client_id ? client_id : "?", cn, allow == 0 ? "" : ": no answer from Gatehouse");
	}
	free(cn);
	return rc;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *action;
	int qos = ed->qos;
	bool retain = ed->retain;
	switch (ed->access) {
	case MOSQ_ACL_WRITE: action = "publish"; break;
	case MOSQ_ACL_SUBSCRIBE: action = "subscribe"; retain = false; break;
	case MOSQ_ACL_READ: action = READ_ACTION; qos = 0; retain = false; break;
	case MOSQ_ACL_UNSUBSCRIBE: return MOSQ_ERR_SUCCESS; /* dropping access is always fine */
	default: return MOSQ_ERR_ACL_DENIED;
	}
	const char *device = mosquitto_client_username(ed->client);
	const char *client_id = mosquitto_client_id(ed->client);
	if (!device || !client_id || !ed->topic) return MOSQ_ERR_ACL_DENIED;

	/* key: device \0 client id \0 access qos retain \0 topic */
	size_t dl = strlen(device), cl = strlen(client_id), tl = strlen(ed->topic);
	size_t keylen = dl + 1 + cl + 1 + 3 + 1 + tl;
	char stackkey[512];
	char *key = keylen <= sizeof(stackkey) ? stackkey : malloc(keylen);
	if (!key) return MOSQ_ERR_ACL_DENIED;
	char *p = key;
	memcpy(p, device, dl + 1);
	p += dl + 1;
	memcpy(p, client_id, cl + 1);
	p += cl + 1;
	*p++ = (char)('0' + ed->access);
	*p++ = (char)('0' + qos);
	*p++ = retain ? 'r' : '-';
	*p++ = '\0';
	memcpy(p, ed->topic, tl);
	uint64_t h = fnv1a(key, keylen);

	int rc = MOSQ_ERR_ACL_DENIED;
	bool pending;
	bool live = stream_live(&pending);
	struct entry *e = live && !pending ? cache_get(&g.cache, key, keylen, h) : NULL;
	if (e) {
		rc = e->allow ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	} else {
		cJSON *req = cJSON_CreateObject();
		int allow = -1;
		if (req && cJSON_AddStringToObject(req, "action", action) &&
		    cJSON_AddStringToObject(req, "client_id", client_id) &&
		    cJSON_AddStringToObject(req, "identity", device) &&
		    cJSON_AddStringToObject(req, "topic", ed->topic) &&
		    cJSON_AddNumberToObject(req, "qos", qos) &&
		    cJSON_AddBoolToObject(req, "retain", retain))
			allow = authorize(req);
		cJSON_Delete(req);
		/* Only answers are cached, never a failure to get one; and only
		 * while the stream is live, so no event can have been missed. */
		if (allow >= 0 && live) cache_put(&g.cache, key, keylen, h, device, allow == 1);
		rc = allow == 1 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if (key != stackkey) free(key);
	return rc;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	/* A client id's next session may belong to the same device with a
	 * different outcome only after a device event, which drops its
	 * entries anyway; entries are keyed by device and client id, not by
	 * connection, so nothing to do per disconnect. Registered so the
	 * broker's disconnects are visible at debug level. */
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	mosquitto_log_printf(MOSQ_LOG_DEBUG, LOG_PREFIX "client %s disconnected (%d)", id ? id : "?", ed->reason);
	return MOSQ_ERR_SUCCESS;
}

static void queue_ack(const char *id, bool ok, const char *error, int sessions)
{
	struct ack *a = calloc(1, sizeof(*a));
	if (!a) return;
	a->id = strdup(id);
	a->error = xstrdup(error);
	a->ok = ok;
	a->sessions = sessions;
	if (!a->id) {
		free(a->error);
		free(a);
		return;
	}
	pthread_mutex_lock(&g.mu);
	a->next = g.acks;
	g.acks = a;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.mu);
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	pthread_mutex_lock(&g.mu);
	struct event *e = g.q_head;
	g.q_head = g.q_tail = NULL;
	g.q_len = 0;
	__atomic_store_n(&g.q_len_atomic, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&g.mu);
	while (e) {
		struct event *n = e->next;
		switch (e->kind) {
		case EV_RESET:
			cache_clear(&g.cache);
			break;
		case EV_DEVICE:
			cache_drop_device(&g.cache, e->a);
			break;
		case EV_KICK: {
			cache_drop_device(&g.cache, e->b);
			int rc = mosquitto_kick_client_by_clientid(e->b, false);
			bool ok = rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_NOT_FOUND;
			mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "kick %s: device %s: %s", e->a, e->b,
					     rc == MOSQ_ERR_SUCCESS ? "session closed" : rc == MOSQ_ERR_NOT_FOUND ? "no session" : mosquitto_strerror(rc));
			queue_ack(e->a, ok, ok ? NULL : mosquitto_strerror(rc), rc == MOSQ_ERR_SUCCESS ? 1 : 0);
			break;
		}
		case EV_LOG:
			mosquitto_log_printf(e->level, LOG_PREFIX "%s", e->a);
			break;
		}
		free_event(e);
		e = n;
	}
	(void)stream_live(NULL); /* logs a change of state even when no client asks */
	return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Event stream thread */

struct sse {
	char line[MAX_SSE_LINE];
	size_t len;
	bool overflow;
	char event[64];
	char *data;
	size_t data_len;
	bool hello;
};

static bool stopping(void)
{
	pthread_mutex_lock(&g.mu);
	bool s = g.stop;
	pthread_mutex_unlock(&g.mu);
	return s;
}

static const char *json_str(cJSON *o, const char *k)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static void dispatch(struct sse *s)
{
	const char *name = s->event[0] ? s->event : "message";
	cJSON *d = s->data ? cJSON_Parse(s->data) : NULL;
	if (strcmp(name, "heartbeat") == 0 && s->hello) {
		/* Only heartbeats make the stream live: Gatehouse sends them only
		 * while its decision core is fresh, but a stale core may still
		 * pass on device and kick events, which must not keep stale
		 * cached decisions in use. */
		pthread_mutex_lock(&g.mu);
		g.last_event_ms = now_ms();
		publish_liveness_locked();
		pthread_mutex_unlock(&g.mu);
	} else if (strcmp(name, "hello") == 0) {
		cJSON *ms = cJSON_GetObjectItemCaseSensitive(d, "max_staleness_ms");
		long long staleness = cJSON_IsNumber(ms) && ms->valuedouble >= 100 ? (long long)ms->valuedouble : DEFAULT_STALENESS_MS;
		/* The cache restarts empty: events may have been missed while
		 * the stream was down. Queued before connected is set, so no
		 * decision cached from then on is dropped by a late reset. */
		enqueue(EV_RESET, NULL, NULL, 0);
		pthread_mutex_lock(&g.mu);
		g.staleness_ms = staleness;
		g.last_event_ms = 0; /* live from the first heartbeat on */
		g.connected = true;
		g.epoch++;
		publish_liveness_locked();
		pthread_mutex_unlock(&g.mu);
		s->hello = true;
		qlog(MOSQ_LOG_NOTICE, "event stream connected (max staleness %lld ms)", staleness);
	} else if (!s->hello) {
		/* Before hello nothing is trusted. */
	} else if (strcmp(name, "device") == 0) {
		const char *dev = json_str(d, "device");
		if (dev) enqueue(EV_DEVICE, dev, NULL, 0);
		else enqueue(EV_RESET, NULL, NULL, 0); /* unreadable: drop everything */
	} else if (strcmp(name, "reset") == 0) {
		enqueue(EV_RESET, NULL, NULL, 0);
	} else if (strcmp(name, "kick") == 0) {
		const char *id = json_str(d, "id"), *dev = json_str(d, "device");
		if (id && dev) enqueue(EV_KICK, id, dev, 0);
		else qlog(MOSQ_LOG_WARNING, "kick event without id or device ignored");
	}
	/* unknown events: ignored */
	cJSON_Delete(d);
}

/* sse_line handles one line of the stream (without its line end). */
static void sse_line(struct sse *s, const char *l, size_t n)
{
	if (n == 0) {
		if (s->data || s->event[0]) dispatch(s);
		free(s->data);
		s->data = NULL;
		s->data_len = 0;
		s->event[0] = '\0';
		return;
	}
	if (l[0] == ':') return; /* comment */
	const char *colon = memchr(l, ':', n);
	size_t fl = colon ? (size_t)(colon - l) : n;
	const char *v = colon ? colon + 1 : l + n;
	size_t vl = n - (size_t)(v - l);
	if (vl > 0 && v[0] == ' ') {
		v++;
		vl--;
	}
	if (fl == 5 && memcmp(l, "event", 5) == 0) {
		if (vl >= sizeof(s->event)) vl = sizeof(s->event) - 1;
		memcpy(s->event, v, vl);
		s->event[vl] = '\0';
	} else if (fl == 4 && memcmp(l, "data", 4) == 0) {
		/* Multiple data lines join with \n, as SSE says. */
		size_t need = s->data_len + (s->data ? 1 : 0) + vl + 1;
		if (need > MAX_SSE_LINE) return;
		char *p = realloc(s->data, need);
		if (!p) return;
		if (s->data) p[s->data_len++] = '\n';
		memcpy(p + s->data_len, v, vl);
		s->data_len += vl;
		p[s->data_len] = '\0';
		s->data = p;
	}
}

static size_t on_stream_data(char *data, size_t size, size_t n, void *userp)
{
	struct sse *s = userp;
	size_t len = size * n;
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (c == '\n') {
			size_t l = s->len;
			if (l > 0 && s->line[l - 1] == '\r') l--;
			if (!s->overflow) sse_line(s, s->line, l);
			s->len = 0;
			s->overflow = false;
		} else if (s->len < sizeof(s->line)) {
			s->line[s->len++] = c;
		} else {
			s->overflow = true; /* the line is dropped, the stream goes on */
		}
	}
	return stopping() ? 0 : len;
}

static int on_stream_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)p;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return stopping() ? 1 : 0;
}

/* sleep_ms waits ms or until stop; returns true when stopping. */
static bool sleep_ms(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&g.mu);
	while (!g.stop && pthread_cond_timedwait(&g.cond, &g.mu, &ts) != ETIMEDOUT) {
	}
	bool s = g.stop;
	pthread_mutex_unlock(&g.mu);
	return s;
}

static void *stream_main(void *arg)
{
	(void)arg;
	char url[2048];
	char *broker = curl_easy_escape(NULL, g.cfg.broker, 0);
	snprintf(url, sizeof(url), "%s/hooks/v1/events?broker=%s", g.cfg.url, broker ? broker : "mosquitto");
	curl_free(broker);
	struct sse *s = calloc(1, sizeof(*s));
	long backoff = BACKOFF_MIN_MS;
	bool logged_down = false;
	while (s && !stopping()) {
		CURL *h = new_handle(0);
		if (!h) break;
		char err[CURL_ERROR_SIZE] = "";
		memset(s, 0, sizeof(*s));
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_stream_progress);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
		curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, g.cfg.timeout_ms);
		/* A silent stream (heartbeats stopped, connection dead) is
		 * dropped and reopened after max_staleness. */
		pthread_mutex_lock(&g.mu);
		long quiet_s = (long)(g.staleness_ms / 1000);
		pthread_mutex_unlock(&g.mu);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, quiet_s > 1 ? quiet_s : 1L);
		CURLcode rc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(h);
		free(s->data);
		s->data = NULL;
		bool had_hello = s->hello;
		pthread_mutex_lock(&g.mu);
		g.connected = false;
		publish_liveness_locked();
		pthread_mutex_unlock(&g.mu);
		if (stopping()) break;
		if (had_hello) {
			backoff = BACKOFF_MIN_MS;
			logged_down = false;
		}
		if (!logged_down) {
			qlog(MOSQ_LOG_WARNING, "event stream %s: %s (HTTP %ld); reconnecting with backoff up to %d ms",
			     had_hello ? "lost" : "cannot connect", rc == CURLE_OK ? "closed by Gatehouse" : err[0] ? err : curl_easy_strerror(rc),
			     status, BACKOFF_MAX_MS);
			logged_down = true;
		}
		if (sleep_ms(backoff)) break;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	free(s);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Ack thread */

static void *ack_main(void *arg)
{
	(void)arg;
	CURL *h = new_handle(g.cfg.timeout_ms);
	for (;;) {
		pthread_mutex_lock(&g.mu);
		while (!g.stop && !g.acks) pthread_cond_wait(&g.cond, &g.mu);
		struct ack *list = g.acks;
		g.acks = NULL;
		bool stop = g.stop;
		pthread_mutex_unlock(&g.mu);
		while (list) {
			struct ack *a = list;
			list = a->next;
			cJSON *o = cJSON_CreateObject();
			char *body = NULL;
			if (o && cJSON_AddStringToObject(o, "id", a->id) && cJSON_AddStringToObject(o, "broker", g.cfg.broker) &&
			    cJSON_AddBoolToObject(o, "ok", a->ok) && cJSON_AddNumberToObject(o, "sessions", a->sessions) &&
			    (!a->error || cJSON_AddStringToObject(o, "error", a->error)))
				body = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			/* A few quick tries; past them Gatehouse's kick worker
			 * retries the kick itself. */
			for (int try = 0; body && h && try < 3 && !stop; try++) {
				char data[MAX_RESPONSE], err[CURL_ERROR_SIZE];
				struct buf out = {data, 0, sizeof(data)};
				long status = post(h, "/hooks/v1/kicks/ack", body, &out, err);
				if (status == 204 || status == 200) break;
				if (status == 404) {
					qlog(MOSQ_LOG_INFO, "kick %s: Gatehouse no longer knows it (404)", a->id);
					break;
				}
				qlog(MOSQ_LOG_WARNING, "kick %s: ack failed: %s", a->id, status ? "unexpected HTTP status" : err);
				if (sleep_ms(200L << try)) break;
			}
			free(body);
			free(a->id);
			free(a->error);
			free(a);
		}
		if (stop) break;
	}
	if (h) curl_easy_cleanup(h);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Init and cleanup */

static char *read_secret_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) return NULL;
	char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t')) buf[--n] = '\0';
	char *s = strdup(buf);
	memset(buf, 0, sizeof(buf));
	return s;
}

static void free_config(struct config *c)
{
	free(c->url);
	if (c->secret) memset(c->secret, 0, strlen(c->secret));
	free(c->secret);
	free(c->cafile);
	free(c->certfile);
	free(c->keyfile);
	free(c->broker);
	memset(c, 0, sizeof(*c));
}

static bool valid_broker_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128) return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == ':'))
			return false;
	}
	return true;
}

static int parse_options(struct mosquitto_opt *opts, int n, struct config *c)
{
	const char *secret_file = NULL;
	c->timeout_ms = 2000;
	c->cache_size = 65536;
	for (int i = 0; i < n; i++) {
		const char *k = opts[i].key, *v = opts[i].value ? opts[i].value : "";
		char *end;
		if (strcmp(k, "url") == 0) {
			free(c->url);
			c->url = strdup(v);
			size_t l = strlen(c->url);
			while (l > 0 && c->url[l - 1] == '/') c->url[--l] = '\0';
		} else if (strcmp(k, "secret") == 0) {
			free(c->secret);
			c->secret = strdup(v);
		} else if (strcmp(k, "secret_file") == 0) {
			secret_file = v;
		} else if (strcmp(k, "cafile") == 0) {
			free(c->cafile);
			c->cafile = strdup(v);
		} else if (strcmp(k, "certfile") == 0) {
			free(c->certfile);
			c->certfile = strdup(v);
		} else if (strcmp(k, "keyfile") == 0) {
			free(c->keyfile);
			c->keyfile = strdup(v);
		} else if (strcmp(k, "broker") == 0) {
			free(c->broker);
			c->broker = strdup(v);
		} else if (strcmp(k, "timeout_ms") == 0) {
			errno = 0;
			long t = strtol(v, &end, 10);
			if (errno || *end || t < 50 || t > 60000) {
				mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_timeout_ms %s: want 50..60000", v);
				return MOSQ_ERR_INVAL;
			}
			c->timeout_ms = t;
		} else if (strcmp(k, "cache_size") == 0) {
			errno = 0;
			long long s = strtoll(v, &end, 10);
			if (errno || *end || s < 0 || s > 16777216) {
				mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_cache_size %s: want 0..16777216", v);
				return MOSQ_ERR_INVAL;
			}
			c->cache_size = (size_t)s;
		} else {
			mosquitto_log_printf(MOSQ_LOG_WARNING, LOG_PREFIX "unknown option plugin_opt_%s ignored", k);
		}
	}
	if (secret_file && !c->secret) {
		c->secret = read_secret_file(secret_file);
		if (!c->secret) {
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "cannot read plugin_opt_secret_file %s: %s", secret_file, strerror(errno));
			return MOSQ_ERR_INVAL;
		}
	}
	if (!c->broker) c->broker = strdup("mosquitto");
	if (!c->url || !c->url[0] || (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0)) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_url (Gatehouse hooks base URL, http:// or https://) is required");
		return MOSQ_ERR_INVAL;
	}
	if (!c->secret || !c->secret[0] || strpbrk(c->secret, "\r\n")) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_secret or plugin_opt_secret_file (the hook secret) is required");
		return MOSQ_ERR_INVAL;
	}
	if (!c->broker || !valid_broker_name(c->broker)) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_broker must be 1-128 of [A-Za-z0-9._:-]");
		return MOSQ_ERR_INVAL;
	}
	if ((c->certfile == NULL) != (c->keyfile == NULL)) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "plugin_opt_certfile and plugin_opt_keyfile go together");
		return MOSQ_ERR_INVAL;
	}
	return MOSQ_ERR_SUCCESS;
}

static void teardown(void)
{
	if (g.threads_started) {
		pthread_mutex_lock(&g.mu);
		g.stop = true;
		pthread_cond_broadcast(&g.cond);
		pthread_mutex_unlock(&g.mu);
		pthread_join(g.stream_thread, NULL);
		pthread_join(g.ack_thread, NULL);
		g.threads_started = false;
	}
	pthread_mutex_lock(&g.mu);
	clear_queue_locked();
	while (g.acks) {
		struct ack *a = g.acks;
		g.acks = a->next;
		free(a->id);
		free(a->error);
		free(a);
	}
	pthread_mutex_unlock(&g.mu);
	cache_clear(&g.cache);
	free(g.cache.buckets);
	g.cache.buckets = NULL;
	if (g.http) curl_easy_cleanup(g.http);
	g.http = NULL;
	if (g.headers) {
		/* the secret header's memory is curl's; overwrite it first */
		for (struct curl_slist *l = g.headers; l; l = l->next) memset(l->data, 0, strlen(l->data));
		curl_slist_free_all(g.headers);
	}
	g.headers = NULL;
	free_config(&g.cfg);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.mu);
	curl_global_cleanup();
}

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++)
		if (supported_versions[i] == 5) return 5;
	return -1;
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback cb;
} callbacks[] = {
	{MOSQ_EVT_BASIC_AUTH, on_basic_auth},
	{MOSQ_EVT_ACL_CHECK, on_acl_check},
	{MOSQ_EVT_DISCONNECT, on_disconnect},
	{MOSQ_EVT_TICK, on_tick},
};

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	memset(&g, 0, sizeof(g));
	g.pid = identifier;
	g.staleness_ms = DEFAULT_STALENESS_MS;
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cond, NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "libcurl did not initialise");
		return MOSQ_ERR_UNKNOWN;
	}
	int rc = parse_options(options, option_count, &g.cfg);
	if (rc != MOSQ_ERR_SUCCESS) {
		teardown();
		return rc;
	}
	char hdr[1200];
	if (snprintf(hdr, sizeof(hdr), "X-Gatehouse-Hook-Secret: %s", g.cfg.secret) >= (int)sizeof(hdr)) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "the hook secret is too long");
		teardown();
		return MOSQ_ERR_INVAL;
	}
	struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
	if (l) g.headers = l;
	if (l && (l = curl_slist_append(g.headers, hdr))) g.headers = l;
	/* curl keeps connections alive; an empty Expect stops it waiting for
	 * "100 Continue" on larger bodies (a certificate). */
	if (l && (l = curl_slist_append(g.headers, "Expect:"))) g.headers = l;
	memset(hdr, 0, sizeof(hdr));
	if (!l || !(g.http = new_handle(g.cfg.timeout_ms)) || cache_init(&g.cache, g.cfg.cache_size ? g.cfg.cache_size : 1) != 0) {
		teardown();
		return MOSQ_ERR_NOMEM;
	}
	if (g.cfg.cache_size == 0) g.cache.cap = 0;
	for (size_t i = 0; i < sizeof(callbacks) / sizeof(callbacks[0]); i++) {
		rc = mosquitto_callback_register(g.pid, callbacks[i].event, callbacks[i].cb, NULL, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG_PREFIX "cannot register for event %d: %s", callbacks[i].event, mosquitto_strerror(rc));
			for (size_t j = 0; j < i; j++) mosquitto_callback_unregister(g.pid, callbacks[j].event, callbacks[j].cb, NULL);
			teardown();
			return rc;
		}
	}
	if (pthread_create(&g.stream_thread, NULL, stream_main, NULL) != 0) {
		for (size_t j = 0; j < sizeof(callbacks) / sizeof(callbacks[0]); j++)
			mosquitto_callback_unregister(g.pid, callbacks[j].event, callbacks[j].cb, NULL);
		teardown();
		return MOSQ_ERR_UNKNOWN;
	}
	if (pthread_create(&g.ack_thread, NULL, ack_main, NULL) != 0) {
		pthread_mutex_lock(&g.mu);
		g.stop = true;
		pthread_cond_broadcast(&g.cond);
		pthread_mutex_unlock(&g.mu);
		pthread_join(g.stream_thread, NULL);
		for (size_t j = 0; j < sizeof(callbacks) / sizeof(callbacks[0]); j++)
			mosquitto_callback_unregister(g.pid, callbacks[j].event, callbacks[j].cb, NULL);
		teardown();
		return MOSQ_ERR_UNKNOWN;
	}
	g.threads_started = true;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG_PREFIX "asking %s (broker %s, timeout %ld ms, cache %zu decisions)", g.cfg.url,
			     g.cfg.broker, g.cfg.timeout_ms, g.cfg.cache_size);
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	for (size_t j = 0; j < sizeof(callbacks) / sizeof(callbacks[0]); j++)
		mosquitto_callback_unregister(g.pid, callbacks[j].event, callbacks[j].cb, NULL);
	teardown();
	return MOSQ_ERR_SUCCESS;
}
