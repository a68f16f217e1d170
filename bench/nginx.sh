# Sourced by the bench scripts: the one nginx configuration the peers are measured against
# (1 worker, access_log off, keep-alive without limit, files under DIR), and the host's steal.
#
#   nginx_conf DIR SERVERS > DIR/nginx.conf     SERVERS: the server { … } blocks
nginx_conf() {
  local dir=$1 servers=$2
  cat <<CONF
worker_processes 1;
worker_rlimit_nofile 19000;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 12000; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
$servers
}
CONF
}

# One nginx in DIR on 127.0.0.1:PORT, pinned to CPU, answering "hello, world" and its
# stub_status at /status; sets NGINX to its pid (the caller's trap stops it).
#
#   nginx_stub DIR PORT CPU; served PORT    # requests answered so far (each read adds one)
nginx_stub() {
  local dir=$1 port=$2 cpu=$3 p
  nginx_conf "$dir" "  server { listen 127.0.0.1:$port backlog=4096;
    location = /status { stub_status; }
    location / { return 200 \"hello, world\\n\"; } }" > "$dir/nginx.conf"
  taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/nginx.out" 2>&1 &
  NGINX=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  for p in $NGINX $(pgrep -P "$NGINX"); do taskset -a -c -p "$cpu" "$p" >/dev/null 2>&1; done
}
served() { curl -s "http://127.0.0.1:$1/status" | awk '/^ +[0-9]+ +[0-9]+ +[0-9]+/{print $3}'; }

# Seconds of CPU the hypervisor took from this guest so far (all CPUs; /proc/stat's steal): a
# window with seconds of it charges every process for CPU it did not get.
steal() { awk -v t="$(getconf CLK_TCK)" '/^cpu / {print $9/t}' /proc/stat; }
