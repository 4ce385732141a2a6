# Evaluates vagrant/Vagrantfile without Vagrant (CI has none): `ruby vagrant/check.rb`.
# A stand-in Vagrant.configure records every setting; then the settings the lab relies
# on are checked: the Debian 12 box, the rsync'd checkout, a provisioning script that
# exists, and the VM's size. Unknown methods are recorded, not rejected: this catches
# Ruby errors and a wrong setup, not every misspelt option.

class Recorder
  attr_reader :calls

  def initialize(path = "config", calls = [])
    @path = path
    @calls = calls
  end

  def method_missing(name, *args, **kw, &block)
    key = "#{@path}.#{name.to_s.delete_suffix('=')}"
    @calls << [key, args, kw]
    child = Recorder.new(key, @calls)
    block&.call(child)
    child
  end

  def respond_to_missing?(*)
    true
  end
end

module Vagrant
  def self.configure(version)
    raise "Vagrant.configure(#{version.inspect}): expected \"2\"" unless version == "2"

    @config = Recorder.new
    yield @config
  end

  def self.recorded
    @config.calls
  end
end

here = File.expand_path(__dir__)
vagrantfile = File.join(here, "Vagrantfile")
eval(File.read(vagrantfile), binding, vagrantfile) # rubocop:disable Security/Eval

calls = Vagrant.recorded
find = ->(key) { calls.select { |k, _, _| k == key } }
errors = []

box = find.call("config.vm.box").map { |_, a, _| a.first }
errors << "config.vm.box is #{box.inspect}, expected debian/bookworm64" unless box == ["debian/bookworm64"]

folders = find.call("config.vm.synced_folder")
lab = folders.find { |_, a, kw| a.first == ".." && kw[:type] == "rsync" }
errors << "no rsync synced folder of the checkout (\"..\")" unless lab
if lab
  excl = lab[2][:rsync__exclude] || []
  errors << "the synced checkout must exclude .venv/ (#{excl.inspect})" unless excl.include?(".venv/")
end

prov = find.call("config.vm.provision")
if prov.empty?
  errors << "no config.vm.provision"
else
  prov.each do |_, a, kw|
    errors << "provisioner #{a.first.inspect}: expected shell" unless a.first == "shell"
    script = File.join(here, kw[:path].to_s)
    errors << "provision script #{script} does not exist" unless File.file?(script)
    dest = lab && lab[1][1]
    errors << "provision args #{kw[:args].inspect} must name the synced checkout #{dest}" unless kw[:args] == [dest]
  end
end

mem = find.call("config.vm.provider.memory").map { |_, a, _| a.first }
errors << "provider memory #{mem.inspect}: want >= 2048 MiB" if mem.empty? || mem.any? { |m| m < 2048 }

if errors.empty?
  puts "vagrant/Vagrantfile: OK (box #{box.first}, checkout -> #{lab[1][1]}, " \
       "provisioned by #{prov.map { |_, _, kw| kw[:path] }.join(', ')}, #{mem.first} MiB)"
else
  errors.each { |e| warn "vagrant/Vagrantfile: #{e}" }
  exit 1
end
