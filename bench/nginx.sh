# Sourced by the bench scripts: the one nginx configuration the peers are measured against
# (1 worker, access_log off, keep-alive without limit, files under DIR).
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
