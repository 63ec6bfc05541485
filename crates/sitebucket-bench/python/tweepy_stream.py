"""tweepy 4.13's v1.1 `Stream` against the bench server, over plain HTTP.

Usage: python tweepy_stream.py http://127.0.0.1:PORT/1.1/site.json

`tweepy.Stream._connect` hard-codes https://stream.twitter.com/1.1/<endpoint>.json; the
subclass below overrides only that URL and otherwise runs tweepy's own connect loop
(requests, OAuth1 signing, `iter_lines` with tweepy's default chunk_size of 512). Site
Streams wrap each message in {"for_user": id, "message": {...}}, which tweepy's `on_data`
does not know, so `on_data` unwraps the envelope and then does exactly what tweepy's does:
`json.loads`, then `Status.parse` for a tweet. The server's final `disconnect` message ends
the run. Prints one line: result messages=.. statuses=.. wall_ns=.. cpu_ns=..
"""

import json
import resource
import sys
import time

import tweepy
from requests_oauthlib import OAuth1
from tweepy.models import Status
from tweepy.streaming import BaseStream


class BenchStream(tweepy.Stream):
    def __init__(self, url, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.url = url
        self.messages = 0
        self.statuses = 0

    def _connect(self, method, endpoint, **kwargs):
        auth = OAuth1(self.consumer_key, self.consumer_secret,
                      self.access_token, self.access_token_secret)
        BaseStream._connect(self, method, self.url, auth=auth, timeout=90, **kwargs)

    def on_data(self, raw_data):
        self.messages += 1
        data = json.loads(raw_data)
        if "for_user" in data and isinstance(data.get("message"), dict):
            data = data["message"]
        if "in_reply_to_status_id" in data:
            return self.on_status(Status.parse(None, data))
        if "disconnect" in data:
            return self.on_disconnect_message(data["disconnect"])

    def on_status(self, status):
        self.statuses += 1

    def on_disconnect_message(self, message):
        self.disconnect()

    def on_closed(self, response):
        self.disconnect()


def cpu_ns():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def main():
    stream = BenchStream(sys.argv[1], "bench-consumer", "bench-secret",
                         "bench-token", "bench-token-secret", max_retries=0)
    cpu0, wall0 = cpu_ns(), time.perf_counter_ns()
    stream.filter(follow=[783214])
    wall, cpu = time.perf_counter_ns() - wall0, cpu_ns() - cpu0
    print(f"result messages={stream.messages} statuses={stream.statuses} "
          f"wall_ns={wall} cpu_ns={cpu} tweepy={tweepy.__version__}")


if __name__ == "__main__":
    main()
