"""`apache2 -t` rejects incomplete AutoTLS configurations and names the
directive at fault; a complete one passes."""
import pytest

from apachectl import Apache


def configtest(test_root, pebble, hosts=(("cfg.apache.test", "www.cfg.apache.test"),), **kw):
    a = Apache(test_root, pebble, [list(h) for h in hosts], **kw)
    return a.configtest()


def test_complete_config_passes(test_root, pebble):
    proc = configtest(test_root, pebble)
    assert proc.returncode == 0, proc.stderr
    assert "Syntax OK" in proc.stderr


@pytest.mark.parametrize("kw, directive", [
    (dict(ca=False), "AutoTLSCA"),
    (dict(accept_terms=False), "AutoTLSAcceptTerms"),
    (dict(ssl_engine=False), "SSLEngine"),
    (dict(keys="ec256 dsa1024"), "AutoTLSKeys"),
    (dict(keys="ec256 ec384"), "AutoTLSKeys"),
    (dict(challenge="smtp-01"), "AutoTLSChallenges"),
    (dict(check_interval="soon"), "AutoTLSCheckInterval"),
    (dict(global_extra="AutoTLSRenewBefore 150%"), "AutoTLSRenewBefore"),
    (dict(global_extra="AutoTLSProfile short sometimes"), "AutoTLSProfile"),
    (dict(hosts=(("wild.apache.test", "*.wild.apache.test"),)), "AutoTLSChallenges dns-01"),
    (dict(challenge="dns-01"), "AutoTLSDnsHook"),
    (dict(vhost_extra="AutoTLSStoreDir /tmp/x"), "AutoTLSStoreDir"),
    (dict(global_extra="AutoTLSStapling maybe"), "AutoTLSStapling"),
    (dict(vhost_extra="AutoTLSStapling Off\nAutoTLSMustStaple On"),
     "AutoTLSMustStaple On needs AutoTLSStapling On"),
    (dict(global_extra="AutoTLSStapling Off", vhost_extra="AutoTLSMustStaple On"),
     "AutoTLSMustStaple On needs AutoTLSStapling On"),
])
def test_bad_config_names_the_directive(test_root, pebble, kw, directive):
    proc = configtest(test_root, pebble, **kw)
    assert proc.returncode != 0, f"apache2 -t accepted it:\n{proc.stderr}"
    assert directive in proc.stderr, proc.stderr
    assert "Syntax OK" not in proc.stderr


def test_wildcard_with_dns01_and_hook_passes(test_root, pebble):
    proc = configtest(test_root, pebble, hosts=(("wild.apache.test", "*.wild.apache.test"),),
                      challenge="dns-01", global_extra="AutoTLSDnsHook /bin/true")
    assert proc.returncode == 0, proc.stderr


def test_sslengine_on_inside_ifmodule_counts(test_root, pebble):
    a = Apache(test_root, pebble, [["ifm.apache.test"]], ssl_engine=False,
               vhost_extra="    <IfModule ssl_module>\n    SSLEngine on\n    </IfModule>")
    proc = a.configtest()
    assert proc.returncode == 0, proc.stderr


def test_stapling_directives_pass(test_root, pebble):
    proc = configtest(test_root, pebble, global_extra="AutoTLSStapling Off",
                      vhost_extra="AutoTLSStapling On\nAutoTLSMustStaple On")
    assert proc.returncode == 0, proc.stderr
    assert "SSLUseStapling" not in proc.stderr


def test_sslusestapling_on_an_autotls_host_is_explained(test_root, pebble):
    # inherited from the top level, inside <IfModule>: still seen
    proc = configtest(test_root, pebble, global_extra=(
        "LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so\n"
        f'SSLStaplingCache "shmcb:{test_root}/run/stapling(32768)"\n'
        "<IfModule ssl_module>\nSSLUseStapling On\n</IfModule>"))
    assert proc.returncode == 0, proc.stderr
    assert "SSLUseStapling On has no effect in an AutoTLS host" in proc.stderr, proc.stderr
    # a host's own Off wins over the top level's On
    proc = configtest(test_root, pebble, global_extra=(
        "LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so\n"
        f'SSLStaplingCache "shmcb:{test_root}/run/stapling(32768)"\nSSLUseStapling On'),
        vhost_extra="SSLUseStapling Off")
    assert proc.returncode == 0, proc.stderr
    assert "SSLUseStapling" not in proc.stderr, proc.stderr
