package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach the Redis that replicas share. Exactly one
// of Password, PasswordFile and PasswordEnv may be set; none means no AUTH.
type RedisConfig struct {
	// Addr is host:port of the Redis server. Required.
	Addr string `yaml:"addr"`
	// Username is the ACL user; empty means the default user.
	Username string `yaml:"username,omitempty"`
	// Password is set from a flag or the environment by the caller; it is
	// never read from the config file.
	Password string `yaml:"-"`
	// PasswordFile is a file, such as a mounted Kubernetes secret, whose
	// content (less a final newline) is the password.
	PasswordFile string `yaml:"password_file,omitempty"`
	// PasswordEnv names an environment variable that holds the password.
	PasswordEnv string `yaml:"password_env,omitempty"`
	// DB is the database number.
	DB int `yaml:"db,omitempty"`
	// Prefix starts every key, so that several installations can share one
	// Redis. It defaults to "remediator:".
	Prefix string `yaml:"prefix,omitempty"`
	// DialTimeout, ReadTimeout and WriteTimeout bound each network step.
	// They default to two seconds, one second and one second.
	DialTimeout  time.Duration `yaml:"dial_timeout,omitempty"`
	ReadTimeout  time.Duration `yaml:"read_timeout,omitempty"`
	WriteTimeout time.Duration `yaml:"write_timeout,omitempty"`
	// MaxRetries is how often a failed command is retried; zero means the
	// client's default of three and -1 means never.
	MaxRetries int `yaml:"max_retries,omitempty"`
}

// DefaultRedisPrefix is the key prefix used when RedisConfig.Prefix is empty.
const DefaultRedisPrefix = "remediator:"

// withDefaults returns c with empty fields set to their defaults.
func (c RedisConfig) withDefaults() RedisConfig {
	if c.Prefix == "" {
		c.Prefix = DefaultRedisPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Second
	}
	return c
}

// Validate reports every problem with c at once.
func (c RedisConfig) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("redis addr is empty"))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis db %d is negative", c.DB))
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		errs = append(errs, errors.New("redis timeouts must not be negative"))
	}
	if c.MaxRetries < -1 {
		errs = append(errs, fmt.Errorf("redis max_retries %d is under -1", c.MaxRetries))
	}
	set := 0
	for _, v := range []string{c.Password, c.PasswordFile, c.PasswordEnv} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, errors.New(
			"redis password, password_file and password_env: set at most one"))
	}
	return errors.Join(errs...)
}

// password returns the password from wherever c says it is.
func (c RedisConfig) password() (string, error) {
	switch {
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read redis password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case c.PasswordEnv != "":
		p, ok := os.LookupEnv(c.PasswordEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("read redis password: $%s is empty or unset", c.PasswordEnv)
		}
		return p, nil
	}
	return c.Password, nil
}

// Redis is a Store in a Redis server, shared by every replica. Claims and
// locks are keys with a PX expiry, Admit and the owner checks of locks are
// Lua scripts, incidents are JSON values indexed by sorted sets, and each
// key-value bucket is a hash. Redis Cluster is not supported: incidents are
// saved with MULTI across keys that may live in different slots.
type Redis struct {
	client *redis.Client
	prefix string
}

var _ Store = (*Redis)(nil)

// NewRedis makes a Redis store from cfg. It checks the config and reads the
// password but does not connect; call Ping to see whether Redis answers.
// While Redis is unreachable a call fails within about a quarter of a second
// with the default retries, so that callers answer 503 promptly.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configure redis state store: %w", err)
	}
	password, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("configure redis state store: %w", err)
	}
	client := redis.NewClient(&redis.Options{
		Addr:                  cfg.Addr,
		Username:              cfg.Username,
		Password:              password,
		DB:                    cfg.DB,
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		MaxRetries:            cfg.MaxRetries,
		ContextTimeoutEnabled: true,
		// Command retries already retry a failed dial; more dial attempts
		// inside each would hold a caller for seconds before its 503.
		DialerRetries: 1,
	})
	return &Redis{client: client, prefix: cfg.Prefix}, nil
}

// fail wraps a Redis failure in ErrUnavailable, naming op.
func fail(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

func (s *Redis) key(kind, name string) string { return s.prefix + kind + ":" + name }

// Claim implements Store with SET NX and a millisecond expiry.
func (s *Redis) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL("claim", key, ttl); err != nil {
		return false, err
	}
	won, err := s.client.SetNX(ctx, s.key("claim", key), 1, ttl).Result()
	if err != nil {
		return false, fail("claim "+key, err)
	}
	return won, nil
}

// Release implements Store.
func (s *Redis) Release(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.key("claim", key)).Err(); err != nil {
		return fail("release claim "+key, err)
	}
	return nil
}

// admitScript is the cooldown and sliding-window budget check of admit in
// runs.go, done inside Redis so that replicas cannot interleave. KEYS[1] is
// a sorted set of run start times in Unix microseconds. ARGV: now, cooldown,
// max runs, window (microseconds), a unique member for this run, the score
// at or below which runs are forgotten, the lowest score inside the window,
// and the key's expiry in milliseconds. Bounds are computed by the
// caller so that no large number is formatted in Lua. It returns {allowed,
// reason, until}.
var admitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[2])
local maxRuns = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[6])
if cooldown > 0 then
  local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #last > 0 then
    local ends = tonumber(last[2]) + cooldown
    if now < ends then
      return {0, 'cooldown', ends}
    end
  end
end
if maxRuns > 0 then
  local count = redis.call('ZCOUNT', KEYS[1], ARGV[7], '+inf')
  if count >= maxRuns then
    local nth = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[7], '+inf',
      'WITHSCORES', 'LIMIT', count - maxRuns, 1)
    return {0, 'budget', tonumber(nth[2]) + window}
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {1, '', 0}
`)

// Admit implements Store with one Lua script.
func (s *Redis) Admit(
	ctx context.Context,
	target string,
	now time.Time,
	b Budget,
) (Admission, error) {
	if err := checkBudget(target, b); err != nil {
		return Admission{}, err
	}
	at := now.UnixMicro()
	cooldown := b.Cooldown.Microseconds()
	window := b.Window.Microseconds()
	keep := historyFor(b)
	member, err := runMember(at)
	if err != nil {
		return Admission{}, fmt.Errorf("admit %s: %w", target, err)
	}
	// The record outlives the run it records by keep and runSlack.
	ttl := (keep + runSlack.Microseconds()) / 1000
	args := []any{at, cooldown, b.MaxRuns, window, member, at - keep, at - window + 1, ttl}
	for i, a := range args {
		args[i] = fmt.Sprint(a)
	}
	res, err := admitScript.Run(ctx, s.client, []string{s.key("runs", target)}, args...).Slice()
	if err != nil {
		return Admission{}, fail("admit "+target, err)
	}
	return parseAdmission(res)
}

// runMember makes a sorted-set member unique to one run, so that two runs
// at the same microsecond are both kept.
func runMember(at int64) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make run id: %w", err)
	}
	return strconv.FormatInt(at, 10) + "-" + hex.EncodeToString(b[:]), nil
}

func parseAdmission(res []any) (Admission, error) {
	if len(res) != 3 {
		return Admission{}, fmt.Errorf("admit: %w: script returned %v", ErrUnavailable, res)
	}
	allowed, _ := res[0].(int64)
	reason, _ := res[1].(string)
	until, _ := res[2].(int64)
	if allowed == 1 {
		return Admission{Allowed: true}, nil
	}
	return refuse(reason, until), nil
}

// lockScript takes KEYS[1] for owner ARGV[1] for ARGV[2] milliseconds when
// it is free or already the owner's.
var lockScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// unlockScript deletes KEYS[1] only when owner ARGV[1] holds it.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Lock implements Store. An owner that already holds the lock extends it
// to ttl from now.
func (s *Redis) Lock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLock(key, owner, ttl); err != nil {
		return false, err
	}
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	n, err := lockScript.Run(ctx, s.client, []string{s.key("lock", key)}, owner, ms).Int()
	if err != nil {
		return false, fail("lock "+key, err)
	}
	return n == 1, nil
}

// Unlock implements Store. It does nothing when owner does not hold key.
func (s *Redis) Unlock(ctx context.Context, key, owner string) error {
	if err := unlockScript.Run(ctx, s.client, []string{s.key("lock", key)}, owner).Err(); err != nil {
		return fail("unlock "+key, err)
	}
	return nil
}

// SaveIncident implements Store. The incident and both indexes, all and
// open, change in one MULTI.
func (s *Redis) SaveIncident(ctx context.Context, inc Incident) error {
	data, err := encodeIncident(inc)
	if err != nil {
		return err
	}
	score := float64(inc.OpenedAt.UnixMilli())
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.key("incident", inc.ID), data, 0)
		p.ZAdd(ctx, s.prefix+"incidents", redis.Z{Score: score, Member: inc.ID})
		if inc.Open() {
			p.ZAdd(ctx, s.prefix+"incidents:open", redis.Z{Score: score, Member: inc.ID})
		} else {
			p.ZRem(ctx, s.prefix+"incidents:open", inc.ID)
		}
		return nil
	})
	if err != nil {
		return fail("save incident "+inc.ID, err)
	}
	return nil
}

// Incident implements Store.
func (s *Redis) Incident(ctx context.Context, id string) (Incident, bool, error) {
	data, err := s.client.Get(ctx, s.key("incident", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Incident{}, false, nil
	}
	if err != nil {
		return Incident{}, false, fail("read incident "+id, err)
	}
	var inc Incident
	if err := json.Unmarshal(data, &inc); err != nil {
		return Incident{}, false, fail("decode incident "+id, err)
	}
	return inc, true, nil
}

// Incidents implements Store. It reads the whole index; incidents are not
// aged out, so the list grows with the history kept in Redis.
func (s *Redis) Incidents(ctx context.Context, openOnly bool) ([]Incident, error) {
	index := s.prefix + "incidents"
	if openOnly {
		index += ":open"
	}
	ids, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: index, Start: 0, Stop: -1, Rev: true,
	}).Result()
	if err != nil {
		return nil, fail("list incidents", err)
	}
	out := make([]Incident, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.key("incident", id)
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fail("list incidents", err)
	}
	for i, v := range vals {
		data, ok := v.(string)
		if !ok {
			continue // deleted behind the index's back
		}
		var inc Incident
		if err := json.Unmarshal([]byte(data), &inc); err != nil {
			return nil, fail("decode incident "+ids[i], err)
		}
		if !openOnly || inc.Open() {
			out = append(out, inc)
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// Put implements Store.
func (s *Redis) Put(ctx context.Context, bucket, key string, value []byte) error {
	if err := checkKV("put", bucket, key); err != nil {
		return err
	}
	if err := s.client.HSet(ctx, s.key("kv", bucket), key, value).Err(); err != nil {
		return fail("put "+bucket+"/"+key, err)
	}
	return nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	v, err := s.client.HGet(ctx, s.key("kv", bucket), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fail("get "+bucket+"/"+key, err)
	}
	return nonNil(v), true, nil
}

// Delete implements Store.
func (s *Redis) Delete(ctx context.Context, bucket, key string) error {
	if err := s.client.HDel(ctx, s.key("kv", bucket), key).Err(); err != nil {
		return fail("delete "+bucket+"/"+key, err)
	}
	return nil
}

// List implements Store.
func (s *Redis) List(ctx context.Context, bucket string) (map[string][]byte, error) {
	all, err := s.client.HGetAll(ctx, s.key("kv", bucket)).Result()
	if err != nil {
		return nil, fail("list "+bucket, err)
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fail("ping redis", err)
	}
	return nil
}

// Close closes the connections. Every later call fails with ErrUnavailable.
func (s *Redis) Close() error {
	if err := s.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("close redis client: %w", err)
	}
	return nil
}
